"""`kubehunt` command line: run the pipeline, set up destinations, list/test hunts, report.

    kubehunt run --audit PATH... --falco PATH... [--output-dir DIR | --es-url URL] [beam options]
    kubehunt setup            install index templates, data streams and indices (idempotent)
    kubehunt hunts list|test  the hunt catalogue
    kubehunt report HUNT_ID   top (account, verb, namespace) ... for a hunt, from Elasticsearch
    kubehunt search HUNT_ID   a hunt's events; kubehunt incidents: incidents with their actions
    kubehunt kibana export|import, kubehunt rules export --format elastic|sigma

Exit codes: 0 success, 2 configuration error (the message says what to fix), 1 run failure (books do not
balance), 3 dead letters above --max-dead-letter-ratio.
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


# Subcommands defined in their own modules: name -> (pipeline module, function).
COMMANDS = {"kibana": ("kibana", "cmd_kibana"), "search": ("search", "cmd_search"),
            "incidents": ("search", "cmd_incidents"), "rules": ("rules", "cmd_rules"),
            "sigma": ("sigma", "cmd_sigma"), "follow": ("follow", "cmd_follow")}


class _NoAbbrevParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    from pipeline.options import add_es_arguments, add_hunt_arguments, add_run_arguments
    from transforms.sources import ALL as SOURCE_REGISTRY

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

    from pipeline import backfill
    backfill.add_parser(sub)

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
                        "hunt's data streams, " + " or ".join(s.index_pattern for s in SOURCE_REGISTRY) + ")")
    add_es_arguments(report)
    from pipeline import follow, kibana, rules, search, sigma
    for module in (kibana, search, rules, sigma, follow):
        module.add_parser(sub)
    return parser


def cmd_run(args, beam_args: list[str]) -> int:
    from pipeline import validate
    from pipeline.options import beam_options, config_from_args
    from pipeline.summary import Summary, redact_url

    from pipeline import streaming
    if streaming.requested(args, beam_args):
        return streaming.cmd_run(args, beam_args)
    cfg = config_from_args(args)
    options = beam_options(beam_args)
    validate.validate_run(cfg)
    sink = (f"files in {cfg.output_dir}" if cfg.output_dir
            else f"Elasticsearch {', '.join(redact_url(h) for h in cfg.es.hosts)}")
    try:
        return _run(cfg, options, sink, args.max_dead_letter_ratio)
    except validate.RunFailure as err:
        if cfg.summary_json:   # what automation reads: the run failed, and why (nothing was counted)
            Summary({}, 0.0, sink, extra={"failed": str(err), "balanced": False}).write_json(cfg.summary_json)
        raise


def _run(cfg, options, sink: str, max_dead_letter_ratio: float | None = None) -> int:
    import apache_beam as beam

    from pipeline import graph, validate
    from pipeline.options import insecure_warning
    from pipeline.summary import Summary, counters_from_result

    if not cfg.output_dir:
        warning = insecure_warning(cfg.es)
        if warning:
            log.warning("%s", warning)
        if cfg.setup_destinations:
            from pipeline.setup import ensure_destinations
            ensure_destinations(cfg.es)
        else:
            validate.check_reachable(cfg.es)
    from transforms.sources import NAMES
    log.info("kubehunt run: %s -> %s", " ".join(f"{s}={list(getattr(cfg, s))}" for s in NAMES), sink)
    started = time.monotonic()
    temp_before = validate.temp_dirs(cfg.output_dir)
    pipeline = beam.Pipeline(options=options)
    from pipeline import progress
    with progress.watch_run(cfg) as cfg:   # a live progress line (terminal) or one log line per interval
        graph.build(pipeline, cfg)
        try:
            result = pipeline.run()
            result.wait_until_finish()
        except Exception as err:  # noqa: BLE001 - any runner failure: one line here, the traceback with -v
            log.debug("run failed", exc_info=True)
            validate.clean_temp_dirs(cfg.output_dir, temp_before)
            raise validate.RunFailure(f"{validate.describe_failure(err)} (writes are idempotent: "
                                      "re-run the same input once the cause is fixed)") from None
    summary = Summary(counters_from_result(result), time.monotonic() - started, sink)
    print(summary.render(), file=sys.stderr)
    if cfg.summary_json:
        summary.write_json(cfg.summary_json)
    from pipeline.backfill import exit_status
    return exit_status(summary.as_dict(), max_dead_letter_ratio)   # 0, 1 unbalanced, 3 dead letters


class _DropImportNoise(logging.Filter):
    """Beam warns at import that optional Google Cloud libraries are absent; kubehunt does not use them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("apitools not found")


class _ShortRunnerErrors(logging.Filter):
    """The runner logs a failing step's error with the whole worker traceback (100+ lines); the run
    then ends with one `kubehunt: run failed:` line naming the cause. Keep the runner's first line
    only, unless --verbose."""

    verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.verbose and record.name.startswith("apache_beam") and record.levelno >= logging.ERROR:
            record.msg, record.args = record.getMessage().splitlines()[0][:300], ()
            record.exc_info = record.exc_text = None
        return True


_SHORT_ERRORS = _ShortRunnerErrors()


def _configure_logging() -> None:
    # Before apache_beam is imported: its first warning would otherwise install its own root handler.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())
        handler.addFilter(_SHORT_ERRORS)


def main(argv: list[str] | None = None) -> int:
    _configure_logging()
    from pipeline.options import ConfigError, flag_names
    from pipeline.validate import RunFailure
    from transforms.elasticsearch import EsConfigError
    from transforms.read import InputError

    argv = list(sys.argv[1:] if argv is None else argv)
    from pipeline.backfill import join_offsets
    argv = join_offsets(argv)   # `backfill --since -24h`: an offset, not an option
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    _SHORT_ERRORS.verbose = args.verbose
    try:
        if args.command == "run":
            return cmd_run(args, extra)
        if args.command == "backfill":
            from pipeline.backfill import cmd_backfill
            return cmd_backfill(args, extra)
        if extra:
            # Flag names only: a mistyped `--es-password VALUE` must not echo the value.
            parser.error(f"unrecognized arguments: {' '.join(flag_names(extra)) or '(values without a flag)'}")
        if args.command in ("setup", "report"):
            from pipeline.options import es_settings_from_args, insecure_warning
            from pipeline.validate import validate_destinations
            settings = es_settings_from_args(args)
            if args.command == "setup":
                validate_destinations(settings)
            warning = insecure_warning(settings)
            if warning:
                log.warning("%s", warning)
        if args.command == "setup":
            from pipeline.setup import cmd_setup
            return cmd_setup(args)
        if args.command == "hunts":
            from pipeline.options import hunt_settings_from_args
            from pipeline.report import cmd_hunts
            from pipeline.validate import validate_hunts
            validate_hunts(hunt_settings_from_args(args))   # a hunt that does not compile: exit 2
            return cmd_hunts(args)
        if args.command == "report":
            from pipeline.report import cmd_report
            return cmd_report(args)
        if args.command in COMMANDS:
            import importlib
            module, function = COMMANDS[args.command]
            return getattr(importlib.import_module(f"pipeline.{module}"), function)(args)
    except (ConfigError, InputError, EsConfigError) as err:
        print(f"kubehunt: error: {err}", file=sys.stderr)
        return 2
    except RunFailure as err:
        print(f"kubehunt: run failed: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
