"""`kubehunt follow`: tail audit logs and Falco alerts on the machine they are written on, for ever.

    kubehunt follow --audit DIR|GLOB --falco DIR|GLOB [--pods F] (--es-url URL | --output-dir D)
                    --state-dir D [--interval 5s]

A plain loop on one process that reuses the production code: each interval it reads the complete
new lines of every watched file (``transforms.tail``: by inode, through renames and compression),
runs them through the pipeline's own fused per-chunk stage (``transforms.process.ProcessChunkFn``:
parse, ECS, hunts, correlation keys), writes documents and dead letters with the pipeline's own sink
(``transforms.elasticsearch.BulkWriteFn``, or NDJSON files), feeds the correlation elements to the
incremental join (``transforms.livejoin``: the batch join's rule and incident builder), writes the
incidents that changed (external versions: they only move forward), and only then commits the
offsets and the join state to ``--state-dir`` with one atomic ``os.replace``. A ``kill -9`` at any
point replays at most one interval, and deterministic ids make that replay a no-op in the sink.

SIGTERM/SIGINT finish the interval under way (write, commit) and exit 0. One progress line per
interval with something new (and one a minute when idle); the run summary on exit.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import orjson

from transforms.records import SOURCES

log = logging.getLogger("kubehunt.follow")

STATE_FILE = "follow-state.pickle"
STATE_FORMAT = 1
IDLE_REPORT_S = 60.0
# A source with no new lines for this many intervals no longer holds the join's watermark back.
IDLE_INTERVALS = 2


def add_parser(sub) -> None:
    from pipeline.options import _duration, _positive_int, add_es_arguments, add_hunt_arguments
    from transforms.read import DEFAULT_CHUNK_LINES, DEFAULT_MAX_LINE_BYTES

    p = sub.add_parser("follow", help="keep tailing log files (through rotations) into Elasticsearch or files",
                       description=__doc__.split("\n\n")[0] + " Offsets and the join state live in --state-dir, "
                       "so a restart (even after kill -9) loses and duplicates nothing.")
    g = p.add_argument_group("inputs")
    g.add_argument("--audit", nargs="+", action="extend", default=[], metavar="PATH",
                   help="audit log directories or globs; give the directory (or a glob matching the rotated "
                        "names too, e.g. 'audit*.log*') so that rotated files are followed to their end")
    g.add_argument("--falco", nargs="+", action="extend", default=[], metavar="PATH", help="Falco JSON, same forms")
    g.add_argument("--pods", metavar="FILE", help="pod inventory (`kubectl get pods -A -o json`), read at start")
    g.add_argument("--chunk-lines", type=_positive_int, default=DEFAULT_CHUNK_LINES, metavar="N")
    g.add_argument("--max-line-bytes", type=_positive_int, default=DEFAULT_MAX_LINE_BYTES, metavar="BYTES")
    o = p.add_argument_group("follow")
    o.add_argument("--state-dir", required=True, metavar="DIR", help="where offsets and join state are kept")
    o.add_argument("--interval", type=_duration, default=timedelta(seconds=5), metavar="DURATION",
                   help="how often to look for new lines (default 5s)")
    o.add_argument("--max-intervals", type=_positive_int, metavar="N", help="stop after N intervals (tests, cron)")
    o.add_argument("--output-dir", metavar="DIR", help="write NDJSON files per interval instead of Elasticsearch")
    o.add_argument("--no-setup", dest="setup_destinations", action="store_false",
                   help="do not install index templates at start")
    o.add_argument("--summary-json", metavar="FILE", help="write the summary as JSON on exit")
    c = p.add_argument_group("correlation")
    c.add_argument("--correlation-window", type=_duration, default=timedelta(minutes=30), metavar="DURATION")
    c.add_argument("--allowed-lateness", type=_duration, default=timedelta(minutes=10), metavar="DURATION",
                   help="how far behind the newest event time an input may arrive and still join (default 10m)")
    c.add_argument("--fact-retention", type=_duration, metavar="DURATION",
                   help="how long a pod -> service-account fact is kept after it was last seen (default: "
                        "window + lateness; longer resolves alerts of long-lived pods from their create event)")
    c.add_argument("--incident-update-interval", type=_duration, default=timedelta(seconds=30),
                   metavar="DURATION", help="an open incident's small changes (a few more actions) are written at "
                   "most this often; a new, re-attributed or confirmed incident, or a doubling of its actions, "
                   "at once (default 30s)")
    c.add_argument("--assume-default-sa", action="store_true")
    c.add_argument("--no-correlation", dest="correlate", action="store_false")
    add_hunt_arguments(p)
    add_es_arguments(p)


class _Config:
    """Validated settings of one `follow` process (driver only: nothing here is pickled)."""

    def __init__(self, args):
        from pipeline.options import ConfigError, es_settings_from_args, hunt_settings_from_args
        from transforms.process import ProcessSettings

        if not any(getattr(args, s) for s in SOURCES):
            raise ConfigError("nothing to follow: give " + " and/or ".join(f"--{s} PATH..." for s in SOURCES))
        for source in SOURCES:
            flag = f"--{source}"
            for pattern in getattr(args, source):
                parent = pattern if os.path.isdir(pattern) else os.path.dirname(pattern.split("*")[0]) or "."
                if not os.path.isdir(parent):
                    raise ConfigError(f"{flag} {pattern}: directory {parent} does not exist")
        if args.interval <= timedelta(0):
            raise ConfigError("--interval must be positive")
        if args.correlation_window <= timedelta(0):
            raise ConfigError("--correlation-window must be positive")
        self.inventory: list = []
        if args.pods:
            from transforms.correlate import InventoryError, inventory_service_accounts
            try:
                self.inventory = inventory_service_accounts(args.pods)
            except InventoryError as err:
                raise ConfigError(f"--pods {err}") from None
        try:
            os.makedirs(args.state_dir, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"--state-dir {args.state_dir}: {err.strerror}") from None
        if args.output_dir:
            os.makedirs(args.output_dir, exist_ok=True)
        self.args = args
        self.sources = {s: list(getattr(args, s)) for s in SOURCES if getattr(args, s)}
        self.es = es_settings_from_args(args)
        self.process = ProcessSettings(hunts=hunt_settings_from_args(args), correlate=args.correlate)
        ms = lambda d: int(d.total_seconds() * 1000)  # noqa: E731
        self.window_ms, self.lateness_ms = ms(args.correlation_window), ms(args.allowed_lateness)
        self.fact_retention_ms = ms(args.fact_retention) if args.fact_retention else None


class _MetricsScope:
    """Collect the production DoFns' Beam counters outside a pipeline (a state sampler with a container)."""

    def __init__(self):
        from apache_beam.metrics.execution import MetricsContainer
        from apache_beam.runners.worker import statesampler
        from apache_beam.utils.counters import CounterFactory

        self._sampler = statesampler.StateSampler("follow", CounterFactory())
        statesampler.set_current_tracker(self._sampler)
        self._container = MetricsContainer("follow")
        self._scope = self._sampler.scoped_state("follow", "process", metrics_container=self._container)

    def __enter__(self):
        self._scope.__enter__()
        return self

    def __exit__(self, *exc):
        return self._scope.__exit__(*exc)

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, value in self._container.get_cumulative().counters.items():
            if key.metric.namespace == "kubehunt":
                out[key.metric.name] = out.get(key.metric.name, 0) + int(value)
        return out


class _EsSink:
    """The pipeline's own bulk writer, driven as one bundle per interval (flushed before the commit)."""

    def __init__(self, settings):
        from transforms.elasticsearch import BulkWriteFn
        self.description = f"Elasticsearch {', '.join(settings.hosts)}"
        self._fn = BulkWriteFn(settings)
        self._fn.setup()

    def write(self, seq: int, documents: list, dead: list, incidents: list) -> None:
        fn = self._fn
        fn.start_bundle()
        if documents:
            fn.process(documents)
        for letter in dead:
            fn.process(("dead_letters", letter["event"]["id"], orjson.dumps(letter)))
        for doc in incidents:
            fn.process(("incidents", doc["event"]["id"], orjson.dumps(doc), doc["kubehunt"]["incident"]["version"]))
        fn.finish_bundle()  # waits for every bulk request: nothing is committed before ES acknowledged it

    def close(self):
        self._fn.teardown()


class _FileSink:
    """NDJSON per interval: DIR/{events,dead-letters,incidents}-<interval>.ndjson, each written whole
    (temp file + rename). A replayed interval rewrites its own files, so nothing is duplicated; an
    incident's newest version is the one with the highest `kubehunt.incident.version`."""

    def __init__(self, directory: str):
        from apache_beam.metrics import Metrics
        self.description = f"files in {directory}"
        self._dir = directory
        self._counters = {k: Metrics.counter("kubehunt", f"written.{k}")
                          for k in (*SOURCES, "dead_letters", "incidents")}

    def _put(self, name: str, seq: int, lines: list[bytes]) -> None:
        path = os.path.join(self._dir, f"{name}-{seq:09d}.ndjson")
        if not lines:
            if os.path.exists(path):
                os.unlink(path)  # a replay that now has nothing for it
            return
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(b"\n".join(lines) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def write(self, seq: int, documents: list, dead: list, incidents: list) -> None:
        self._put("events", seq, [item[2] for item in documents])
        self._put("dead-letters", seq, [orjson.dumps(d) for d in dead])
        self._put("incidents", seq, [orjson.dumps(d) for d in incidents])
        for kind, n in Counter(item[0] for item in documents).items():
            self._counters[kind].inc(n)
        self._counters["dead_letters"].inc(len(dead))
        self._counters["incidents"].inc(len(incidents))

    def close(self):
        pass


def load_state(state_dir: str):
    from transforms.livejoin import JoinState
    from transforms.tail import TailState

    path = os.path.join(state_dir, STATE_FILE)
    if not os.path.exists(path):
        return TailState(), JoinState(), 0
    with open(path, "rb") as fh:
        data = pickle.load(fh)
    if data.get("format") != STATE_FORMAT:
        raise RuntimeError(f"{path}: state format {data.get('format')} is not {STATE_FORMAT}")
    return TailState.from_json(data["tail"]), data["join"], data["seq"]


def commit_state(state_dir: str, tail, join, seq: int) -> None:
    """Offsets + join state in one file, replaced atomically (and durably) only after the output."""
    path = os.path.join(state_dir, STATE_FILE)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump({"format": STATE_FORMAT, "tail": tail.to_json(), "join": join, "seq": seq}, fh,
                    protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _lock(state_dir: str):
    handle = open(os.path.join(state_dir, "lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        from pipeline.options import ConfigError
        raise ConfigError(f"--state-dir {state_dir} is in use by another `kubehunt follow`") from None
    return handle  # the kernel releases it when the process dies, even on kill -9


def cmd_follow(args) -> int:
    from pipeline.summary import Summary
    from transforms.livejoin import IncrementalJoin
    from transforms.process import ProcessChunkFn
    from transforms.records import CORRELATION, DEAD_LETTER
    from transforms.tail import Tailer

    import apache_beam as beam

    cfg = _Config(args)
    lock = _lock(args.state_dir)
    if not args.output_dir and args.setup_destinations:
        from pipeline.setup import ensure_destinations
        ensure_destinations(cfg.es)
    stop = threading.Event()

    def _on_signal(signum, _frame):
        log.info("kubehunt follow: %s received, finishing the interval under way", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    tail_state, join_state, seq = load_state(args.state_dir)
    join = IncrementalJoin(cfg.window_ms, cfg.lateness_ms, args.assume_default_sa, cfg.inventory,
                           cfg.fact_retention_ms, join_state, args.incident_update_interval.total_seconds())
    tailer = Tailer(cfg.sources, args.chunk_lines, args.max_line_bytes)
    interval = args.interval.total_seconds()
    started = time.monotonic()
    metrics = _MetricsScope()
    with metrics:
        sink = _EsSink(cfg.es) if not args.output_dir else _FileSink(args.output_dir)
        process = ProcessChunkFn(cfg.process)
        process.setup()
        from apache_beam.metrics import Metrics
        lines_read = {s: Metrics.counter("kubehunt", f"lines_read.{s}") for s in SOURCES}
        dead_read = Metrics.counter("kubehunt", "dead.read")
        incidents_total = Metrics.counter("kubehunt", "incidents.total")
        incidents_confirmed = Metrics.counter("kubehunt", "incidents.confirmed")
        log.info("kubehunt follow: %s -> %s, state in %s, every %.1fs (resuming after interval %d)",
                 cfg.sources, sink.description, args.state_dir, interval, seq)
        intervals = 0
        idle: dict[str, int] = {}
        last_report = 0.0
        before = metrics.totals()
        try:
            while True:
                t0 = time.monotonic()
                new_tail, chunks, dead, backlog = tailer.poll(tail_state)
                for source in cfg.sources:
                    idle[source] = 0 if source in tailer.grown else idle.get(source, IDLE_INTERVALS) + 1
                documents, correlation = [], []
                for chunk in chunks:
                    lines_read[chunk.source].inc(len(chunk.lines))
                    for out in process.process((chunk.source, chunk.origin, chunk.first, chunk.lines)):
                        if isinstance(out, beam.pvalue.TaggedOutput):
                            if out.tag == DEAD_LETTER:
                                dead.append(out.value)
                            elif out.tag == CORRELATION:
                                correlation.append(out.value)
                        else:
                            documents.extend(out)
                dead_read.inc(sum(1 for d in dead if d["kubehunt"]["dead_letter"]["stage"] == "read"))
                incidents = []
                # On the way out (SIGTERM, --max-intervals) every pending incident change is written.
                last = stop.is_set() or bool(args.max_intervals and intervals + 1 >= args.max_intervals)
                if args.correlate:
                    join.add(correlation)
                    incidents = join.advance({s for s, n in idle.items() if n <= IDLE_INTERVALS},
                                             now=time.time(), flush=last)
                busy = bool(chunks or dead or incidents)
                if busy:
                    seq += 1
                    sink.write(seq, documents, dead, incidents)
                    for doc in incidents:
                        incidents_total.inc()
                        if doc["kubehunt"]["incident"]["confirmed"]:
                            incidents_confirmed.inc()
                # Output first, then the offsets and the join state (one atomic replace).
                if busy or new_tail.to_json() != tail_state.to_json():
                    commit_state(args.state_dir, new_tail, join.state, seq)
                tail_state = new_tail
                intervals += 1
                now = time.monotonic()
                if busy or now - last_report >= IDLE_REPORT_S:
                    last_report = now
                    totals = metrics.totals()
                    delta = {k: totals.get(k, 0) - before.get(k, 0) for k in totals}
                    before = totals
                    log.info(_progress_line(seq, delta, len(incidents), join.sizes(), now - t0, backlog))
                if (stop.is_set() and last) or (args.max_intervals and intervals >= args.max_intervals):
                    break
                if stop.is_set():
                    continue  # the signal came during this interval: one more, that flushes, then out
                if not backlog:
                    stop.wait(max(0.0, interval - (time.monotonic() - t0)))
                    if stop.is_set() and not args.max_intervals:
                        # Lines written since the last poll are read and flushed before exiting.
                        continue
        finally:
            sink.close()
            lock.close()
    counters = metrics.totals()
    counters["alerts.unresolved"] = join.state.unresolved
    summary = Summary(counters, time.monotonic() - started, sink.description,
                      extra={"intervals": intervals, "last_interval": seq, "join_state": join.sizes()})
    print(summary.render().replace("kubehunt run summary", "kubehunt follow summary"), file=sys.stderr)
    if args.summary_json:
        summary.write_json(args.summary_json)
    return 0 if summary.as_dict()["balanced"] else 1


def _progress_line(seq: int, d: dict, incidents: int, sizes: dict, took: float, backlog: bool) -> str:
    lines = " ".join(f"+{d.get(f'lines_read.{s}', 0):,} {s}" for s in SOURCES)
    written = sum(d.get(f"written.{s}", 0) for s in SOURCES)
    present = sum(d.get(f"present.{s}", 0) for s in SOURCES)
    dead = sum(v for k, v in d.items() if k.startswith("dead.") and not k.startswith("dead.index"))
    return (f"interval {seq}: {lines} lines; "
            f"{written:,} indexed, {present:,} already present, {dead:,} dead-lettered; "
            f"{incidents:,} incident versions; held: {sizes['alerts']:,} alerts, {sizes['actions']:,} actions, "
            f"{sizes['pods']:,} pods; {took:.2f}s" + ("; backlog" if backlog else ""))
