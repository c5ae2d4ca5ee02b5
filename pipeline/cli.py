"""`kubehunt` command line: run the pipeline, set up destinations, list/test hunts, report.

    kubehunt run --audit PATH... --falco PATH... [--output-dir DIR | --es-url URL] [beam options]
    kubehunt setup            install index templates, data streams and indices (idempotent)
    kubehunt hunts list|test  the hunt catalogue
    kubehunt report HUNT_ID   top (account, verb, namespace) ... for a hunt, from Elasticsearch

Exit codes: 0 success, 2 configuration error (the message says what to fix), 1 run failure.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

log = logging.getLogger("kubehunt")

RUN_EPILOG = """\
Any standard Apache Beam pipeline option is passed through, for example:
  --runner DirectRunner|FlinkRunner|SparkRunner|DataflowRunner
  --direct_running_mode multi_processing --direct_num_workers 2
  --streaming  --project P --region R --temp_location gs://...
Secrets are never taken from the command line: use $KUBEHUNT_ES_PASSWORD, $KUBEHUNT_ES_API_KEY,
$KUBEHUNT_ES_BEARER_TOKEN, or the matching --es-*-file options.
Every run ends with a summary on stderr (and in --summary-json FILE): events read per source, hunt
matches, incidents, dead letters, documents written, elapsed time and rate. The run exits 1 if the
books do not balance (read != written + dead-lettered).
"""


class _NoAbbrevParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    from pipeline.options import add_es_arguments, add_hunt_arguments, add_run_arguments

    # allow_abbrev=False everywhere: `--es-password SECRET` must not be taken as an abbreviation of
    # `--es-password-file` (and then echoed in a "no such file" error).
    parser = argparse.ArgumentParser(
        prog="kubehunt", allow_abbrev=False,
        description="Threat hunting over Kubernetes audit logs and Falco alerts: normalise to ECS, tag hunts, "
                    "correlate escalation chains, write to Elasticsearch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_NoAbbrevParser)

    run = sub.add_parser("run", help="run the pipeline", epilog=RUN_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Read audit logs and Falco alerts, normalise to ECS, tag hunts, correlate "
                                     "by service account and write to Elasticsearch (or --output-dir).")
    add_run_arguments(run)
    from pipeline import streaming
    streaming.add_arguments(run)

    setup = sub.add_parser("setup", help="install index templates, data streams, incidents and dead-letter "
                                         "indices (idempotent)")
    add_es_arguments(setup)
    setup.add_argument("--ilm-policy", action="store_true", help="also install a 30-day delete ILM policy")

    hunts = sub.add_parser("hunts", help="the hunt catalogue")
    hunts_sub = hunts.add_subparsers(dest="hunts_command", required=True, metavar="ACTION")
    hunts_list = hunts_sub.add_parser("list", help="id, title, severity and source of every hunt")
    add_hunt_arguments(hunts_list)
    hunts_test = hunts_sub.add_parser("test", help="run every hunt's match/no_match examples")
    add_hunt_arguments(hunts_test)

    report = sub.add_parser("report", help="rank a hunt's matches in Elasticsearch (the playbook's "
                                           "`sort | uniq -c | sort -rn | head`) as a table")
    report.add_argument("hunt", metavar="HUNT_ID", help="a hunt id, or `secret-access` for "
                                                       "secret-access-unexpected-sa")
    report.add_argument("--top", type=int, default=30, metavar="N", help="rows to show (default 30)")
    report.add_argument("--since", metavar="DATE_MATH", help="only events after this (e.g. now-7d)")
    report.add_argument("--index", metavar="PATTERN", help="index / data stream pattern to search (default: the "
                        "hunt's data streams, logs-kubernetes.audit_logs-* or logs-falco.alerts-*)")
    add_es_arguments(report)
    from pipeline import follow
    follow.add_parser(sub)
    return parser


def cmd_run(args, beam_args: list[str]) -> int:
    import apache_beam as beam

    from pipeline import graph
    from pipeline.options import beam_options, config_from_args
    from pipeline.summary import Summary, counters_from_result

    from pipeline import streaming
    if streaming.requested(args, beam_args):
        return streaming.cmd_run(args, beam_args)
    cfg = config_from_args(args)
    options = beam_options(beam_args)
    sink = f"files in {cfg.output_dir}" if cfg.output_dir else f"Elasticsearch {', '.join(cfg.es.hosts)}"
    if not cfg.output_dir and cfg.setup_destinations:
        from pipeline.setup import ensure_destinations
        ensure_destinations(cfg.es)
    log.info("kubehunt run: audit=%s falco=%s -> %s", list(cfg.audit), list(cfg.falco), sink)
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    graph.build(pipeline, cfg)
    result = pipeline.run()
    result.wait_until_finish()
    summary = Summary(counters_from_result(result), time.monotonic() - started, sink)
    print(summary.render(), file=sys.stderr)
    if cfg.summary_json:
        summary.write_json(cfg.summary_json)
    return 0 if summary.as_dict()["balanced"] else 1


class _DropImportNoise(logging.Filter):
    """Beam warns at import that optional Google Cloud libraries are absent; kubehunt does not use them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("apitools not found")


def _configure_logging() -> None:
    # Before apache_beam is imported: its first warning would otherwise install its own root handler.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())


def main(argv: list[str] | None = None) -> int:
    _configure_logging()
    from pipeline.options import ConfigError, flag_names
    from transforms.elasticsearch import EsConfigError
    from transforms.read import InputError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if args.command == "run":
            return cmd_run(args, extra)
        if extra:
            # Flag names only: a mistyped `--es-password VALUE` must not echo the value.
            parser.error(f"unrecognized arguments: {' '.join(flag_names(extra)) or '(values without a flag)'}")
        if args.command == "setup":
            from pipeline.setup import cmd_setup
            return cmd_setup(args)
        if args.command == "hunts":
            from pipeline.report import cmd_hunts
            return cmd_hunts(args)
        if args.command == "report":
            from pipeline.report import cmd_report
            return cmd_report(args)
        if args.command == "follow":
            from pipeline.follow import cmd_follow
            return cmd_follow(args)
    except (ConfigError, InputError, EsConfigError) as err:
        print(f"kubehunt: error: {err}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
