#!/usr/bin/env python3
"""Benchmark the per-event path of kubehunt, as ratios against baselines measured in the same run.

    python scripts/bench.py [--events 200000] [--skip-multiprocess]

Figures (events/s, peak RSS) for:
  baseline   a hand-written one-core loop: orjson.loads + orjson.dumps per line (the floor of any
             JSON-in/JSON-out pipeline on this machine)
  core       kubehunt's fused per-event functions in a plain loop (parse -> ECS -> hunts -> correlation
             extract -> serialise), no Beam
  pipeline   `kubehunt run --output-dir` on the in-process DirectRunner (one core)
  pipeline2  the same with --direct_running_mode=multi_processing --direct_num_workers=2
The corpus is the shipped demo audit log repeated with fresh auditIDs (~1 KB events).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def machine() -> str:
    mem_kb = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB, Python {platform.python_version()}"


def make_corpus(path: Path, events: int) -> int:
    template = [orjson.loads(line) for line in (ROOT / "tests/data/demo/audit.log").read_bytes().splitlines() if line]
    size = 0
    with path.open("wb") as fh:
        for i in range(events):
            ev = dict(template[i % len(template)])
            ev["auditID"] = f"{i:08x}-bench-{ev['auditID'][:18]}"
            line = orjson.dumps(ev) + b"\n"
            size += len(line)
            fh.write(line)
    return size


def bench_baseline(path: Path) -> float:
    lines = path.read_bytes().splitlines()
    start = time.perf_counter()
    for line in lines:
        orjson.dumps(orjson.loads(line))
    return len(lines) / (time.perf_counter() - start)


def bench_core(path: Path) -> float:
    from transforms import correlate, hunts
    from transforms.ecs import Normaliser
    from transforms.parse import records

    normaliser = Normaliser()
    catalogue = hunts.load_catalogue(hunts.HuntSettings())
    lines = path.read_bytes().splitlines()
    start = time.perf_counter()
    for line in lines:
        for record, envelope in records("audit", line):
            doc = normaliser.to_ecs("audit", record, envelope)
            catalogue.tag(doc)
            correlate.extract(doc)
            orjson.dumps(doc)
    return len(lines) / (time.perf_counter() - start)


def bench_pipeline(path: Path, events: int, extra: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "pipeline.cli", "run", "--audit", str(path), "--output-dir", out, *extra]
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise SystemExit(f"pipeline failed:\n{proc.stderr[-3000:]}")
        return events / elapsed, max(peak, before) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--skip-multiprocess", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "audit.log"
        size = make_corpus(corpus, args.events)
        print(f"corpus: {args.events:,} audit events, {size / args.events:.0f} bytes/event")
        base = bench_baseline(corpus)
        print(f"baseline   orjson loads+dumps loop     {base:>10,.0f} events/s   1.00x")
        core = bench_core(corpus)
        print(f"core       fused kubehunt functions    {core:>10,.0f} events/s   {core / base:.2f}x of baseline")
        rate, peak = bench_pipeline(corpus, args.events, [])
        print(f"pipeline   kubehunt run (in-process)   {rate:>10,.0f} events/s   {rate / base:.2f}x of baseline, "
              f"{rate / core:.2f}x of core; peak RSS {peak:,.0f} MiB (incl. startup)")
        if not args.skip_multiprocess:
            rate2, peak2 = bench_pipeline(corpus, args.events, ["--direct_running_mode=multi_processing",
                                                                "--direct_num_workers=2"])
            print(f"pipeline2  multi_processing, 2 workers {rate2:>10,.0f} events/s   {rate2 / base:.2f}x of baseline; "
                  f"peak RSS {peak2:,.0f} MiB (largest process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
