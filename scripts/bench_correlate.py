"""Benchmark: the escalation-chain join's memory for one hot service account, 1,000,000 events vs a baseline.

The question (issue 5): does the join's memory grow with the number of events, or only with the
documents of one window? Each size runs in a fresh child process that drives the production stages of
``transforms.correlate.STAGES`` (route -> resolve -> join -> assemble; the composite's own wiring) the way a streaming runner does: input
in event-time bundles, state per key, the watermark following the input (minus the allowed lateness)
and event-time timers firing as it passes them. The event *rate* is the same for every size (so a
30-minute window always holds the same number of events); only the duration grows (the harness:
``tests/builders/join_harness.py``). Reported per size:
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
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders.join_harness import MINUTE, drive_join  # noqa: E402


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
        print(json.dumps(drive_join(args.child, args.rate_per_hour, window_ms, lateness_ms, args.bundle, not args.no_trace)))
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
