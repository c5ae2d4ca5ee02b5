"""Normalisation cost on a realistic corpus, next to the hand-written floor measured in the same run.

The corpus is the project's own seeded generator (`tests/builders/corpus.py`: real-shaped request and
response bodies); the floor is `../shared/bench/floor_ecs.py` (orjson loads, ~25-field ECS document by
hand, four hunt predicates, dumps) on the same audit file. Reported: µs per event of
`Normaliser.to_ecs` alone and of parse + to_ecs + orjson.dumps per line, and the floor's µs per line,
with the ratio floor/ours (1.0 = as fast as the floor). Every figure is CPU time of the measuring
thread (the floor's `main()` runs in this process too), best of `--rounds` rounds: on a shared machine
that is far steadier than wall time. Still, compare ratios, not absolute figures.

    .venv/bin/python scripts/bench_ecs.py [--events 20000] [--rounds 5] [--profile]
    .venv/bin/python scripts/bench_ecs.py --stages --events 40000 --rounds 7

`--stages`: the whole per-event loop of the job (`transforms.process.ProcessChunkFn`, no Beam) on
`scripts/bench.py`'s corpus (`generate_bench`: real-shaped bodies), built up one stage at a time:
each row runs the rows above it too, so a row's increment is what its stage adds. The rows are
measured separately, so increments carry the machine's noise (a few µs): run it twice.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.builders.corpus import generate, generate_falco  # noqa: E402
from transforms.ecs import Normaliser  # noqa: E402
from transforms.parse import records  # noqa: E402

FLOOR = ROOT.parent / "shared" / "bench" / "floor_ecs.py"


def best(fn, items, rounds: int) -> float:
    """CPU seconds (of this thread) per item, best round."""
    out = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for item in items:
            fn(item)
        out = min(out, (time.thread_time() - start) / len(items))
    return out


def floor_us(path: Path, lines: int, rounds: int) -> float | None:
    """The floor's CPU µs per line: its own main() run in this thread on `path`, best round."""
    if not FLOOR.is_file():
        return None
    spec = importlib.util.spec_from_file_location("floor_ecs", FLOOR)
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    out = float("inf")
    argv = sys.argv
    try:
        for _ in range(rounds):
            sys.argv = ["floor_ecs.py", str(path)]
            start = time.thread_time()
            with contextlib.redirect_stdout(io.StringIO()):
                floor.main()
            out = min(out, (time.thread_time() - start) / lines)
    finally:
        sys.argv = argv
    return out * 1e6


def stages(events: int, seed: int, rounds: int) -> int:
    import gc

    from tests.builders.corpus import generate_bench
    from transforms import correlate, hunts
    from transforms.ecs.ids import _event_id
    from transforms.process import ProcessChunkFn, ProcessSettings

    lines = [orjson.dumps(ev) for ev in generate_bench(events, seed)[0]]
    normaliser = Normaliser()
    to_ecs, mapping = normaliser.to_ecs, normaliser._maps["audit"]
    catalogue = hunts.load_catalogue(hunts.HuntSettings())
    tag, confirming = catalogue.tag, catalogue.confirming

    def checked(record):
        ident, canonical = _event_id("audit", record)
        mapping.check(record, b"\\u0000" in canonical)

    def tagged(record, envelope):
        doc = to_ecs("audit", record, envelope)
        tag(doc)
        return doc

    def extracted(record, envelope):
        doc = tagged(record, envelope)
        correlate.extract(doc, confirming)
        return doc

    steps = [
        ("parse (orjson + guards)", lambda r, e: None),
        ("+ event id (sorted dumps + SHA-256)", lambda r, e: _event_id("audit", r)),
        ("+ storability check", lambda r, e: checked(r)),
        ("+ generated ECS apply", lambda r, e: (checked(r), mapping.apply(r))),
        ("= to_ecs (+ time checks, id, original)", lambda r, e: to_ecs("audit", r, e)),
        ("+ hunt tagging", tagged),
        ("+ join extraction", extracted),
        ("+ serialise (orjson.dumps)", lambda r, e: orjson.dumps(extracted(r, e))),
    ]
    fn = ProcessChunkFn(ProcessSettings())
    fn.setup()   # also gc.freeze(), as on a worker
    gc.freeze()
    chunks = [("audit", "bench", i + 1, lines[i:i + 1000]) for i in range(0, len(lines), 1000)]
    with tempfile.TemporaryDirectory() as tmp:
        audit_file = Path(tmp) / "audit.ndjson"
        audit_file.write_bytes(b"\n".join(lines) + b"\n")
        floor = floor_us(audit_file, len(lines), rounds)
    print(f"corpus: {len(lines)} audit events of generate_bench (avg {sum(map(len, lines)) / len(lines):.0f} B), "
          f"seed {seed}; CPU µs per event, best of {rounds}")
    if floor is not None:
        print(f"{'floor (floor_ecs.py, same lines)':<42}{floor:7.1f}")
    previous = 0.0
    for name, step in steps:
        def run(line, step=step):
            for record, envelope in records("audit", line):
                step(record, envelope)
        us = best(run, lines, rounds) * 1e6
        print(f"{name:<42}{us:7.1f}   (+{us - previous:.1f})")
        previous = us
    whole = best(lambda chunk: list(fn.process(chunk)), chunks, rounds) * 1e6 / 1000
    print(f"{'= ProcessChunkFn.process (the whole loop)':<42}{whole:7.1f}" +
          (f"   floor/ours {floor / whole:.2f}x" if floor is not None else ""))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile to_ecs on the audit corpus instead")
    parser.add_argument("--stages", action="store_true",
                        help="the job's per-event loop built up stage by stage on bench.py's corpus instead")
    args = parser.parse_args()
    if args.stages:
        return stages(args.events, args.seed, args.rounds)
    audit_lines = [orjson.dumps(ev) for ev, _ in generate(args.events, args.seed)]
    falco_lines = [orjson.dumps(a) for a in generate_falco(max(1, args.events // 10), args.seed)]
    normaliser = Normaliser()
    to_ecs = normaliser.to_ecs
    if args.profile:
        import cProfile
        import pstats
        recs = [pair for line in audit_lines for pair in records("audit", line)]
        with cProfile.Profile() as prof:
            for record, envelope in recs:
                to_ecs("audit", record, envelope)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        audit_file = Path(tmp) / "audit.ndjson"
        audit_file.write_bytes(b"\n".join(audit_lines) + b"\n")
        floor = floor_us(audit_file, len(audit_lines), args.rounds)
    print(f"corpus: {len(audit_lines)} audit events (avg {sum(map(len, audit_lines)) / len(audit_lines):.0f} B), "
          f"{len(falco_lines)} Falco alerts (avg {sum(map(len, falco_lines)) / len(falco_lines):.0f} B), "
          f"seed {args.seed}")
    if floor is not None:
        print(f"floor (floor_ecs.py, same audit file): {floor:.2f} µs/line = {1e6 / floor:,.0f}/s")
    for source, lines in (("audit", audit_lines), ("falco", falco_lines)):
        recs = [pair for line in lines for pair in records(source, line)]
        t_ecs = best(lambda pair: to_ecs(source, pair[0], pair[1]), recs, args.rounds) * 1e6

        def full(line):
            for record, envelope in records(source, line):
                orjson.dumps(to_ecs(source, record, envelope))
        t_full = best(full, lines, args.rounds) * 1e6
        ratio = f" | floor/ours {floor / t_full:.2f}x" if floor is not None and source == "audit" else ""
        print(f"{source}: to_ecs {t_ecs:.2f} µs/event | parse+to_ecs+dumps {t_full:.2f} µs/line "
              f"= {1e6 / t_full:,.0f}/s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
