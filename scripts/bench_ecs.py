"""Normalisation cost on the real samples: µs per event of `Normaliser.to_ecs`, and of the per-line
work parse + to_ecs + orjson.dumps, next to an orjson floor (loads + dumps of the same lines).

    .venv/bin/python scripts/bench_ecs.py [--seconds 2]

Best of 5 rounds per figure (the machine is shared; the minimum is the least disturbed round).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transforms.ecs import Normaliser  # noqa: E402
from transforms.parse import ParseError, records  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def lines_of(source: str) -> list[bytes]:
    out = []
    for path in sorted((DATA / source).rglob("*")):
        if path.is_file():
            for line in path.read_bytes().splitlines():
                if line.strip():
                    try:
                        list(records(source, line))
                        out.append(line)
                    except ParseError:
                        pass
    return out


def best_us(fn, items, seconds: float) -> float:
    reps = max(1, int(seconds / 5 * 20000 / max(1, len(items))))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            for item in items:
                fn(item)
        best = min(best, (time.perf_counter() - start) / (reps * len(items)))
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    normaliser = Normaliser()
    for source in ("audit", "falco"):
        lines = lines_of(source)
        recs = [pair for line in lines for pair in records(source, line)]
        to_ecs = normaliser.to_ecs
        t_ecs = best_us(lambda pair: to_ecs(source, pair[0], pair[1]), recs, args.seconds)

        def full(line):
            for record, envelope in records(source, line):
                orjson.dumps(to_ecs(source, record, envelope))
        t_full = best_us(full, lines, args.seconds)
        t_floor = best_us(lambda line: orjson.dumps(orjson.loads(line)), lines, args.seconds)
        size = sum(map(len, lines)) / len(lines)
        print(f"{source}: {len(recs)} records, avg line {size:.0f} B | to_ecs {t_ecs:.1f} µs/event | "
              f"parse+to_ecs+dumps {t_full:.1f} µs/line = {1e6 / t_full:,.0f}/s | "
              f"orjson loads+dumps floor {t_floor:.1f} µs = {1e6 / t_floor:,.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
