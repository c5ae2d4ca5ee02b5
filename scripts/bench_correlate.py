"""Benchmark: the escalation-chain join's memory for one hot service account, 1,000,000 events vs a baseline.

The question (issue 5): does the join's memory grow with the number of events, or only with the
documents of one window? Each size runs in a fresh child process that drives the production stages of
``transforms.correlate.STAGES`` (route -> resolve -> join -> assemble; the composite's own wiring) the way a streaming runner does: input
in event-time bundles, state per key, the watermark following the input (minus the allowed lateness)
and event-time timers firing as it passes them. The event *rate* is the same for every size (so a
30-minute window always holds the same number of events); only the duration grows. Reported per size:
peak traced Python memory (tracemalloc), peak RSS, the most events held in join state at once, and
throughput. The input is generated lazily and is not held.

    .venv/bin/python scripts/bench_correlate.py                 # 100,000 vs 1,000,000 events
    .venv/bin/python scripts/bench_correlate.py --quick         # 20,000 vs 200,000 at 10,000/hour (seconds)
    .venv/bin/python scripts/bench_correlate.py --sizes 50000 500000 --rate-per-hour 50000

Not measured here: the runner's own shuffle. The local batch FnApiRunner keeps every shuffled element
in memory (it is a test runner); Flink, Spark and Dataflow spill shuffles and keyed state to disk, so
what the join itself keeps per key is what decides whether a hot account fits.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transforms.correlate.messages import unpack  # noqa: E402  (the join's bags hold packed batches)

HOT_SA = "system:serviceaccount:data:crawler"
MINUTE = 60_000
BASE_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


# ---------------------------------------------------------------------------------------------
# A minimal keyed-state harness (the runner's part), driving the production DoFns unchanged


class Bag:
    def __init__(self):
        self.items = []

    def add(self, value):
        self.items.append(value)

    def read(self):
        return list(self.items)

    def clear(self):
        self.items = []


class Cell:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class Timer:
    def __init__(self, timers: dict, name):
        self._timers, self._name = timers, name

    def set(self, ts):
        self._timers[self._name] = ts.micros // 1000


class Stage:
    """One stage of ``transforms.correlate.STAGES``: its DoFn, state per key (read from the DoFn's own
    state and timer parameters), timers per key, outputs collected per call."""

    def __init__(self, spec, fn):
        from apache_beam.transforms.core import _StateDoFnParam, _TimerDoFnParam
        from apache_beam.transforms.userstate import BagStateSpec

        self.spec, self.fn = spec, fn
        self.states: dict = {}
        self.timer_param = self.on_timer = self.key_param = None
        for name, param in inspect.signature(fn.process).parameters.items():
            if isinstance(param.default, _StateDoFnParam):
                self.states[name] = Bag if isinstance(param.default.state_spec, BagStateSpec) else Cell
            elif isinstance(param.default, _TimerDoFnParam):
                self.timer_param = name
                callback = param.default.timer_spec._attached_callback
                self.on_timer = callback.__name__
                self.key_param = next((n for n, p in inspect.signature(callback).parameters.items()
                                       if p.default is type(fn).KeyParam), None)
        self.keyed = bool(self.states)
        self.keys: dict = {}
        self.timers: dict = {}  # key -> fire time (ms)

    def _state(self, key):
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = {name: kind() for name, kind in self.states.items()}
        return st

    def process(self, element) -> list:
        if not self.keyed:
            return list(self.fn.process(element) or [])
        key = element[0]
        st = self._state(key)
        return list(self.fn.process(element, **st, **{self.timer_param: Timer(self.timers, key)}) or [])

    def fire(self, watermark_ms: int) -> list:
        out = []
        if not self.keyed:
            return out
        for key in [k for k, t in self.timers.items() if t <= watermark_ms]:
            del self.timers[key]
            st = self.keys[key]
            method = getattr(self.fn, self.on_timer)
            accepted = inspect.signature(method).parameters
            kwargs = {name: st[name] for name in self.states if name in accepted}
            if self.key_param:
                kwargs[self.key_param] = key
            out.extend(method(**kwargs) or [])
            if not any(isinstance(s, Bag) and s.items or isinstance(s, Cell) and s.value is not None
                       for s in st.values()):
                del self.keys[key]
        return out


def _unwrap(item):
    """(tag, value) of a DoFn output (TaggedOutput / WindowedValue / TimestampedValue / plain)."""
    import apache_beam as beam
    tag = None
    if isinstance(item, beam.pvalue.TaggedOutput):
        tag, item = item.tag, item.value
    return tag, getattr(item, "value", item)


def events(n: int, rate_per_hour: int, alert_every_ms: int):
    """Join inputs in event-time order: n requests of one hot SA, an alert in its pod regularly."""
    from transforms.correlate import Action, AlertSeen, PodFact

    step = 3_600_000 / rate_per_hour
    yield PodFact("data", "crawler-0", "pod_create", HOT_SA, BASE_MS - MINUTE)
    next_alert = BASE_MS + 15 * MINUTE
    alert_no = 0
    for i in range(n):
        t = BASE_MS + int(i * step)
        while t >= next_alert:
            yield AlertSeen("data", "crawler-0", next_alert, f"alert-{alert_no}", "Unexpected outbound connection")
            alert_no += 1
            next_alert += alert_every_ms
        yield Action(HOT_SA, t, f"audit-{i:08d}-ResponseComplete", "get", "pods", (), i % 10_000 == 0)


def child(n: int, rate_per_hour: int, window_ms: int, lateness_ms: int, bundle: int, trace: bool) -> dict:
    """Drive ``transforms.correlate.STAGES`` (the composite's own wiring) like a streaming runner."""
    from transforms import correlate as c

    if trace:
        tracemalloc.start()
    settings = c.JoinSettings(window_ms, lateness_ms, window_ms, False, early=True)
    stages = [Stage(spec, spec.make(settings)) for spec in c.STAGES]
    consumer = {channel: stage for stage in stages for channel in stage.spec.inputs}
    join = next(s for s in stages if s.spec.label == "JoinWithinWindow")
    incidents = final_incidents = max_joined = peak_state = 0
    started = time.perf_counter()

    def deliver(stage, outputs):
        nonlocal incidents, final_incidents, max_joined
        channels = dict(stage.spec.outputs)
        for item in outputs:
            tag, value = _unwrap(item)
            channel = channels.get(tag)
            if channel == "versions":
                done, doc = value
                incidents += 1
                final_incidents += done
                max_joined = max(max_joined, doc["kubehunt"]["incident"]["action_count"])
            elif channel in consumer:
                target = consumer[channel]
                deliver(target, target.process(value))

    def run_bundle(elements):
        route = stages[0]
        route.fn.start_bundle()
        deliver(route, [o for e in elements for o in route.process(e)] + list(route.fn.finish_bundle()))

    def advance(watermark_ms):
        nonlocal peak_state
        held = sum(len(unpack(b)) for st in join.keys.values() for b in st["events"].items)  # packed batches
        peak_state = max(peak_state, held)
        for stage in stages:
            deliver(stage, stage.fire(watermark_ms))

    buf = []
    for element in events(n, rate_per_hour, 60 * MINUTE):
        buf.append(element)
        if len(buf) >= bundle:
            run_bundle(buf)
            last_t = max(e.t_ms for e in buf)
            buf = []
            advance(last_t - lateness_ms)
    if buf:
        run_bundle(buf)
    advance(2 ** 62)
    elapsed = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    return {"events": n, "elapsed_s": round(elapsed, 2), "events_per_s": round(n / elapsed),
            "peak_traced_mib": round(traced / 2 ** 20, 1) if traced is not None else None,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "max_events_in_join_state": peak_state, "largest_incident_actions": max_joined,
            "incident_versions": incidents, "final_incidents": final_incidents,
            "events_per_window": int(rate_per_hour * window_ms / 3_600_000)}


def machine() -> str:
    cpu = "unknown cpu"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        mem = next(line.split(":", 1)[1].strip() for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    import apache_beam
    return (f"{platform.platform()}; {cpu}; {os.cpu_count()} cpus; {mem}; Python {platform.python_version()}; "
            f"apache-beam {apache_beam.__version__}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="20,000 vs 200,000 events at 10,000/hour")
    parser.add_argument("--rate-per-hour", type=int, default=25_000,
                        help="hot account requests per hour (default 25,000: the 100k baseline spans 4 hours, so it reaches the steady state)")
    parser.add_argument("--window-min", type=float, default=30)
    parser.add_argument("--lateness-min", type=float, default=10)
    parser.add_argument("--bundle", type=int, default=1000)
    parser.add_argument("--no-trace", action="store_true", help="skip tracemalloc (faster; RSS only)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    window_ms, lateness_ms = int(args.window_min * MINUTE), int(args.lateness_min * MINUTE)
    if args.child is not None:
        print(json.dumps(child(args.child, args.rate_per_hour, window_ms, lateness_ms, args.bundle, not args.no_trace)))
        return 0
    sizes = [20_000, 200_000] if args.quick else args.sizes
    if args.quick:
        args.rate_per_hour = 10_000
    print(f"machine: {machine()}")
    print(f"hot account: {args.rate_per_hour:,} requests/hour, window {args.window_min:g} min, lateness "
          f"{args.lateness_min:g} min, one alert per hour; bundles of {args.bundle}")
    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--rate-per-hour", str(args.rate_per_hour),
               "--window-min", str(args.window_min), "--lateness-min", str(args.lateness_min),
               "--bundle", str(args.bundle)] + (["--no-trace"] if args.no_trace else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    header = ("events", "events_per_window", "max_events_in_join_state", "largest_incident_actions",
              "final_incidents", "incident_versions", "peak_traced_mib", "peak_rss_mib", "elapsed_s", "events_per_s")
    print("  ".join(f"{h:>24}" if i == 0 else f"{h:>12}" for i, h in enumerate(header)))
    for row in rows:
        print("  ".join(f"{row[h]:>24,}" if i == 0 else f"{row[h] if row[h] is not None else '-':>12}"
                        for i, h in enumerate(header)))
    if len(rows) >= 2 and rows[0]["peak_traced_mib"]:
        a, b = rows[0], rows[-1]
        print(f"{b['events'] / a['events']:.0f}x the events -> peak traced memory x"
              f"{b['peak_traced_mib'] / a['peak_traced_mib']:.2f}, peak RSS x{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}, "
              f"join state x{b['max_events_in_join_state'] / max(a['max_events_in_join_state'], 1):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
