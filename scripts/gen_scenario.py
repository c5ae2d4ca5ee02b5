#!/usr/bin/env python3
"""Write the seeded escalation-chain scenario with its ground truth (``tests/builders/scenario.py``).

    python scripts/gen_scenario.py OUT_DIR [--seed 7] [--hot-events 100000]

writes OUT_DIR/audit.log, OUT_DIR/falco.log, OUT_DIR/pods.json and OUT_DIR/expected.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders.scenario import generate  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hot-events", type=int, default=100_000)
    args = parser.parse_args(argv)
    scenario = generate(args.seed, args.hot_events)
    paths = scenario.write(args.out_dir)
    print(f"{len(scenario.audit):,} audit events, {len(scenario.falco)} alerts, "
          f"{len(scenario.expected)} expected incidents -> {paths['audit'].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
