#!/usr/bin/env python3
"""Benchmark the hunt tagger against normalisation, per event, over the generated realistic corpus.

    .venv/bin/python scripts/bench_hunts.py [--events 50000] [--falco 5000] [--repeat 3]

Prints µs/event for to_ecs and for Catalogue.tag (best of --repeat), the tag/normalise ratio, and the
same tagger with the resource index switched off (every hunt of the dataset evaluated) for comparison.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from transforms.ecs import Normaliser  # noqa: E402
from transforms.hunts import Catalogue, HuntSettings, load_catalogue  # noqa: E402


def _gen():
    import tests.builders.corpus
    return tests.builders.corpus


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--falco", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    gen = _gen()
    # Round-trip through JSON so records look exactly like parsed input lines.
    records = [("audit", orjson.loads(orjson.dumps(e))) for e, _ in gen.generate(args.events, seed=1)]
    records += [("falco", orjson.loads(orjson.dumps(a))) for a in gen.generate_falco(args.falco, seed=1)]
    normaliser = Normaliser()
    catalogue = load_catalogue(HuntSettings())
    # The same hunts without their resource/verb keys: every hunt of the dataset runs on every event.
    unindexed = Catalogue(tuple(replace(c, index_keys=None, verb_keys=None) for c in catalogue.hunts))
    n = len(records)
    to_ecs = normaliser.to_ecs
    t_norm = best(lambda: [to_ecs(s, r) for s, r in records], args.repeat)
    docs_sets = [[to_ecs(s, r) for s, r in records] for _ in range(args.repeat)]
    it = iter(docs_sets)
    tag = catalogue.tag
    t_tag = best(lambda: [tag(d) for d in next(it)], args.repeat)
    docs_sets = [[to_ecs(s, r) for s, r in records] for _ in range(args.repeat)]
    it = iter(docs_sets)
    tag_all = unindexed.tag
    t_all = best(lambda: [tag_all(d) for d in next(it)], args.repeat)
    matched = sum(1 for d in docs_sets[-1] if d.get("kubehunt", {}).get("hunts"))
    print(f"events: {n} ({args.events} audit + {args.falco} falco), hunts: {len(catalogue.hunts)}, "
          f"tagged: {matched}")
    print(f"normalise (to_ecs):          {t_norm / n * 1e6:6.2f} µs/event")
    print(f"tag (indexed catalogue):     {t_tag / n * 1e6:6.2f} µs/event  = {t_tag / t_norm:5.1%} of normalise")
    print(f"tag (no index, every hunt):  {t_all / n * 1e6:6.2f} µs/event  = {t_all / t_norm:5.1%} of normalise")


if __name__ == "__main__":
    main()
