#!/usr/bin/env python3
"""Write the seeded audit corpus (and Falco alerts) of ``tests/builders/corpus.py`` to files.

    python scripts/gen_corpus.py --events 20000 --seed 7 --out corpus.audit.ndjson [--labels labels.txt]
                                 [--falco 2000 --falco-out corpus.falco.ndjson]
    python scripts/gen_corpus.py --events 400000 --bench-dir DIR     # the benchmark's corpus (generate_bench)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders.corpus import generate_falco, write_bench_corpus, write_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", help="audit NDJSON output")
    ap.add_argument("--labels", help="write one label per line (empty = background)")
    ap.add_argument("--falco", type=int, default=0, help="also generate this many Falco alerts")
    ap.add_argument("--falco-out", help="Falco NDJSON output")
    ap.add_argument("--bench-dir", help="instead: write the benchmark corpus (audit.log, falco.json, pods.json) here")
    args = ap.parse_args()
    if args.bench_dir:
        write_bench_corpus(args.bench_dir, args.events, args.seed)
        return
    if not args.out:
        ap.error("--out is required (or --bench-dir)")
    labels = write_corpus(args.out, args.events, args.seed)
    if args.labels:
        with open(args.labels, "w") as fh:
            fh.writelines(f"{label or ''}\n" for label in labels)
    if args.falco:
        if not args.falco_out:
            ap.error("--falco needs --falco-out")
        with open(args.falco_out, "wb") as fh:
            for alert in generate_falco(args.falco, args.seed):
                fh.write(orjson.dumps(alert) + b"\n")


if __name__ == "__main__":
    main()
