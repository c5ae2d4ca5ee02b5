"""`kubehunt backfill --since T --until T`: process exactly the events of a time range, resumably.

    kubehunt backfill --since yesterday --until today --audit '/var/log/kubernetes/audit/*' \\
        --falco '/var/log/falco/*' (--es-url URL | --output-dir DIR) [run options]

1. Plan (driver, before the job): list the files, skip those that cannot hold the range
   (``transforms.timerange.plan_files``: rotation names, first/last lines), mark those past ``until``
   but within the correlation window as *tail* files (read for the join only), and skip files the
   checkpoint (``pipeline.checkpoint``) lists as finished for this same backfill.
2. Run the ordinary graph (``pipeline.graph``) over the files left, with the range set in the
   per-event stage (``ProcessSettings.time_range``): only events in ``[since, until)`` are written,
   with their own ``@timestamp``; the tail's service-account actions still reach the join.
3. On a re-run (the checkpoint knows this backfill), the Elasticsearch sink first looks up which ids
   already exist anywhere in the data stream (``transforms.dedupe``), so a rollover between the runs
   does not make a second copy. ``--output-dir`` output is staged and replaces the previous output
   only when the run succeeded.

Exit status: 0 done, 1 the books do not balance, 2 configuration, 3 dead letters above
``--max-dead-letter-ratio``.
"""
from __future__ import annotations

import argparse
import collections
import glob
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import replace
from datetime import timedelta

log = logging.getLogger("kubehunt.backfill")

_OFFSET = re.compile(r"-\d+(?:\.\d+)?(?:ms|s|m|h|d|w)")
EXIT_OK, EXIT_UNBALANCED, EXIT_CONFIG, EXIT_DEAD_LETTERS = 0, 1, 2, 3
OUTPUT_KINDS = ("events", "incidents", "dead-letters")

EPILOG = """\
Times: RFC 3339 (2026-01-15T14:00:00Z, 2026-01-15T15:00:00+01:00), a date (2026-01-15 = midnight),
now, today, yesterday (midnight in --tz, default UTC), or an offset from now (-24h, -7d, -90m).
The range is [--since, --until): an event at exactly --until belongs to the next backfill.
Exit status: 0 done, 1 books do not balance, 2 configuration error, 3 dead letters above
--max-dead-letter-ratio. Re-running the same command after a failure or a kill finishes the work
without duplicates (see docs/operations.md).
"""


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a ratio between 0 and 1")
    return value


def add_exit_arguments(group) -> None:
    """`--max-dead-letter-ratio`, for `run` and `backfill` (added by pipeline.options.add_run_arguments)."""
    group.add_argument("--max-dead-letter-ratio", type=ratio, default=None, metavar="R",
                       help="exit 3 when dead letters / records read exceeds R (e.g. 0.01)")


def join_offsets(argv: list[str]) -> list[str]:
    """`--since -24h` -> `--since=-24h`: argparse takes a value starting with `-` for an option."""
    out: list[str] = []
    it = iter(range(len(argv)))
    for i in it:
        token = argv[i]
        if token in ("--since", "--until") and i + 1 < len(argv) and _OFFSET.fullmatch(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            next(it, None)
        else:
            out.append(token)
    return out


def add_parser(sub) -> argparse.ArgumentParser:
    from pipeline.options import _duration, add_run_arguments

    parser = sub.add_parser(
        "backfill", help="process exactly the events of a time range (resumable, exact across rollovers)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read audit logs and Falco alerts, and write exactly the events whose own time is in "
                    "[--since, --until), skipping files that cannot hold the range.")
    g = parser.add_argument_group("time range")
    g.add_argument("--since", required=True, metavar="TIME", help="start of the range (inclusive)")
    g.add_argument("--until", required=True, metavar="TIME", help="end of the range (exclusive)")
    g.add_argument("--tz", metavar="ZONE", help="zone of `today`, `yesterday`, times without an offset and "
                   "logrotate date names (default UTC), e.g. Europe/Paris")
    g.add_argument("--rotation-slack", type=_duration, default=timedelta(hours=1), metavar="DURATION",
                   help="how much earlier than a file's previous rotation (or first line) its events' own "
                        "times may be: a long request is logged when it completes (default 1h)")
    r = parser.add_argument_group("scheduling")
    r.add_argument("--checkpoint-index", default="kubehunt-checkpoints", metavar="NAME",
                   help="Elasticsearch index of finished files (default kubehunt-checkpoints); with "
                        "--output-dir the checkpoint is DIR/.kubehunt-checkpoint.json")
    r.add_argument("--progress", choices=("auto", "bar", "log", "off"), default="auto",
                   help="a live progress bar on a terminal, one log line per interval otherwise (auto)")
    r.add_argument("--progress-interval", type=_duration, default=timedelta(seconds=15), metavar="DURATION",
                   help="how often the log form of the progress prints (default 15s)")
    add_run_arguments(parser)
    return parser


# ---------------------------------------------------------------------------------------------
# Planning


def list_files(patterns) -> list:
    """Every file the patterns match (once), with size and mtime, via Beam's filesystems."""
    from apache_beam.io.filesystems import FileSystems

    from transforms.timerange import FileInfo

    seen: dict[str, FileInfo] = {}
    for pattern in patterns:
        for m in FileSystems.match([pattern])[0].metadata_list:
            if m.path.endswith("/") or os.path.isdir(m.path):
                continue
            seen.setdefault(m.path, FileInfo(m.path, int(m.size_in_bytes or 0),
                                             float(getattr(m, "last_updated_in_seconds", 0.0) or 0.0)))
    return sorted(seen.values(), key=lambda f: f.path)


class Peeker:
    """First and last event time of a file, from its first line and (when it can seek) its last line."""

    def __init__(self, mapping_dir: str | None = None, max_line_bytes: int = 8 * 1024 * 1024):
        from transforms.ecs import Normaliser

        self._normaliser = Normaliser(mapping_dir)
        self._max = max_line_bytes

    def _time(self, source: str, line: bytes) -> int | None:
        from transforms.correlate import epoch_ms
        from transforms.ecs import NormaliseError
        from transforms.parse import ParseError, records

        try:
            for record, envelope in records(source, line):
                return epoch_ms(self._normaliser.to_ecs(source, record, envelope)["@timestamp"])
        except (ParseError, NormaliseError, KeyError, ValueError, TypeError):
            return None
        return None

    def __call__(self, source: str, path: str) -> tuple[int | None, int | None]:
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        from transforms.read import open_input

        first = last = None
        try:
            with open_input(path) as fh:
                for _ in range(20):   # the first line with a time
                    line = fh.readline(self._max)
                    if not line:
                        break
                    if line.strip() and (first := self._time(source, line)) is not None:
                        break
            if CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED:
                with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
                    if raw.read(2) == b"\x1f\x8b":
                        return first, None      # gzip under another name: no cheap last line
                    size = raw.seek(0, os.SEEK_END)
                    raw.seek(max(0, size - 256 * 1024))
                    tail = raw.read()
                for line in reversed(tail.splitlines()[1 if size > 256 * 1024 else 0:]):
                    if line.strip() and (last := self._time(source, line)) is not None:
                        break
        except (OSError, EOFError, ValueError):
            return first, None
        return first, last


def plan(cfg, rng, *, slack_ms: int, tz: str | None, peek=None) -> list:
    from transforms.timerange import plan_files

    peek = peek or Peeker(max_line_bytes=cfg.max_line_bytes)
    out = []
    for source, patterns in cfg.inputs():
        if patterns:
            out += plan_files(source, list_files(patterns), rng, slack_ms=slack_ms, peek=peek, tz=tz)
    return out


# ---------------------------------------------------------------------------------------------
# Running


def _time_range(args):
    from pipeline.options import ConfigError
    from transforms.timerange import TimeRange, TimeRangeError, parse_when, to_ms

    try:
        since = parse_when(args.since, option="--since", tz=args.tz)
        until = parse_when(args.until, option="--until", tz=args.tz)
        tail = args.correlation_window if args.correlate else timedelta(0)
        return TimeRange(to_ms(since), to_ms(until), int(tail.total_seconds() * 1000))
    except TimeRangeError as err:
        raise ConfigError(str(err)) from None


def _checkpoint(cfg, args):
    from pipeline.checkpoint import EsCheckpoint, FileCheckpoint

    if cfg.output_dir:
        return FileCheckpoint(cfg.output_dir)
    return EsCheckpoint(cfg.es, args.checkpoint_index)


def _publish(staging: str, output_dir: str) -> None:
    """Replace the previous output of each kind with the staged one (only after a successful run)."""
    for kind in OUTPUT_KINDS:
        new = sorted(glob.glob(os.path.join(staging, f"{kind}-*")))
        for old in glob.glob(os.path.join(output_dir, f"{kind}-*")):
            os.remove(old)
        for path in new:
            os.replace(path, os.path.join(output_dir, os.path.basename(path)))
    shutil.rmtree(staging, ignore_errors=True)


def exit_status(d: dict, max_dead_letter_ratio: float | None) -> int:
    """0 done, 1 books do not balance, 3 dead letters above the ratio (2, configuration, is raised earlier)."""
    if not d["balanced"]:
        return EXIT_UNBALANCED
    dead = sum(v for k, v in d["dead_letters"].items() if k != "written")
    if max_dead_letter_ratio is not None and d["records_read"] and dead / d["records_read"] > max_dead_letter_ratio:
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def backfill_section(rng, plans, finished: set, rerun: bool, checkpoint_where: str, counters: dict) -> dict:
    from transforms.records import SOURCES
    from transforms.timerange import PLACES, ms_text

    skipped = collections.Counter(p.reason.split(" (")[0] for p in plans if p.role == "skip")
    if finished:
        skipped["finished in an earlier run"] = len(finished)
    outside = {place: {s: int(counters.get(f"outside.{place}.{s}", 0)) for s in SOURCES} for place in PLACES}
    return {
        "since": ms_text(rng.since_ms), "until": ms_text(rng.until_ms), "join_reads_until": ms_text(rng.tail_end_ms),
        "files": {"total": len(plans),
                  "read": sum(1 for p in plans if p.role in ("range", "tail") and p.file.path not in finished),
                  "tail_only": sum(1 for p in plans if p.role == "tail" and p.file.path not in finished),
                  "skipped": dict(skipped)},
        "outside_range": outside,
        "rerun": rerun,
        "checkpoint": checkpoint_where,
    }


def render_section(d: dict) -> str:
    b = d["backfill"]
    outside = sum(sum(v.values()) for v in b["outside_range"].values())
    written = sum(d["written"]["indexed"].values()) + sum(d["written"]["already_present"].values())
    dead = sum(v for k, v in d["dead_letters"].items() if k not in ("written", "index"))
    dead_index = d["dead_letters"]["index"]
    skipped = "; ".join(f"{n} {why}" for why, n in sorted(b["files"]["skipped"].items())) or "none"
    return "\n".join([
        "kubehunt backfill",
        f"  range             [{b['since']}, {b['until']}) (the join reads on to {b['join_reads_until']})",
        f"  files             {b['files']['total']} matched, {b['files']['read']} read "
        f"({b['files']['tail_only']} for the join only), skipped: {skipped}",
        f"  outside the range {outside:,} events read, not written (before {sum(b['outside_range']['before'].values()):,}, "
        f"join tail {sum(b['outside_range']['tail'].values()):,}, after {sum(b['outside_range']['after'].values()):,})",
        f"  books             read {d['records_read'] + outside:,} = written {written:,} + dead-lettered "
        f"{dead + dead_index:,} + outside the range {outside:,}",
        f"  re-run            {'yes: ids already in the data streams are skipped' if b['rerun'] else 'no'} "
        f"(checkpoint {b['checkpoint']})",
    ])


def cmd_backfill(args, beam_args: list[str]) -> int:
    import apache_beam as beam

    from pipeline import graph
    from pipeline.checkpoint import FINISHED, STARTED, finished_files, run_key
    from pipeline.options import beam_options, config_from_args
    from pipeline.summary import Summary, counters_from_result

    rng = _time_range(args)
    cfg = config_from_args(args)
    options = beam_options(beam_args)
    slack_ms = int(args.rotation_slack.total_seconds() * 1000)
    started = time.monotonic()
    plans = plan(cfg, rng, slack_ms=slack_ms, tz=args.tz)
    destinations = cfg.output_dir or (cfg.es.hosts, cfg.es.indices)
    key = run_key(rng.since_ms, rng.until_ms, rng.tail_ms, destinations, cfg.process.correlate)
    checkpoint = _checkpoint(cfg, args)
    entries = checkpoint.load(key)
    rerun = bool(entries)
    wanted = [p for p in plans if p.role in ("range", "tail")]
    in_range = [p.file for p in wanted if p.role == "range"]
    done = finished_files(entries, in_range)
    if cfg.output_dir and len(done) < len(in_range):
        # Files output is replaced as a whole, so either every file is finished or all are read again.
        done = set()
    todo = [p for p in wanted if p.file.path not in done]
    sink = f"files in {cfg.output_dir}" if cfg.output_dir else f"Elasticsearch {', '.join(cfg.es.hosts)}"
    for p in plans:
        log.debug("plan %s %s: %s [%s]", p.role, p.file.path, p.how, p.reason)
    if not any(p.role == "range" for p in todo):
        counters: dict = {}
        summary = Summary(counters, time.monotonic() - started, sink,
                          extra={"backfill": backfill_section(rng, plans, done, rerun, checkpoint.where, counters)})
        print(("nothing left to do: every file of the range is finished\n" if done else
               "no file can hold events of the range\n") + render_section(summary.as_dict()), file=sys.stderr)
        if cfg.summary_json:
            summary.write_json(cfg.summary_json)
        return EXIT_OK

    from transforms.records import SOURCES
    paths = {s: tuple(p.file.path for p in todo if p.source == s) for s in SOURCES}
    staging = None
    run_cfg = replace(cfg, **paths,
                      process=replace(cfg.process, time_range=rng),
                      es=replace(cfg.es, dedupe_existing=rerun))
    if cfg.output_dir:
        staging = os.path.join(cfg.output_dir, f".kubehunt-staging-{key}")
        shutil.rmtree(staging, ignore_errors=True)   # left by a killed run
        os.makedirs(staging)
        run_cfg = replace(run_cfg, output_dir=staging)
    elif cfg.setup_destinations:
        from pipeline.setup import ensure_destinations
        ensure_destinations(cfg.es)
    checkpoint.mark(key, [p.file for p in todo if p.role == "range"], STARTED)
    section = backfill_section(rng, plans, done, rerun, checkpoint.where, {})
    log.info("kubehunt backfill [%s, %s): %d files to read (%d for the join only) -> %s%s", section["since"],
             section["until"], len(todo), sum(p.role == "tail" for p in todo), sink, " (re-run)" if rerun else "")

    from pipeline import progress
    pipeline = beam.Pipeline(options=options)
    with progress.watch([p.file for p in todo], mode=args.progress,
                        interval_s=args.progress_interval.total_seconds()) as watcher:
        run_cfg = replace(run_cfg, process=replace(run_cfg.process, progress_dir=watcher.directory))
        graph.build(pipeline, run_cfg)
        result = pipeline.run()
        result.wait_until_finish()
    counters = counters_from_result(result)
    summary = Summary(counters, time.monotonic() - started, sink,
                      extra={"backfill": backfill_section(rng, plans, done, rerun, checkpoint.where, counters)})
    d = summary.as_dict()
    status = exit_status(d, args.max_dead_letter_ratio)
    if status != EXIT_UNBALANCED:
        if staging:
            _publish(staging, cfg.output_dir)
        checkpoint.mark(key, [p.file for p in todo if p.role == "range"], FINISHED)
    print(summary.render() + "\n" + render_section(d), file=sys.stderr)
    if cfg.summary_json:
        summary.write_json(cfg.summary_json)
    return status
