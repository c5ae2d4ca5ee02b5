#!/usr/bin/env python3
"""Write mappings/kibana/saved-searches.ndjson: the Kibana saved objects made from mappings/hunts.

The objects (data views, one saved search per hunt, incident searches, the overview dashboard) are
described in pipeline/kibana.py, which `kubehunt kibana export|import` uses too. Import the file with
Stack Management > Saved Objects > Import, or `kubehunt kibana import`. Deterministic (no timestamps),
so tests/test_kibana.py regenerates and compares.

    python scripts/gen_kibana.py [--check]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mappings  # noqa: E402
from pipeline.kibana import render  # noqa: E402,F401 - the generator lives in pipeline.kibana (kubehunt kibana export)

OUTPUT = mappings.path("kibana", "saved-searches.ndjson")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file on disk is not what would be generated")
    args = ap.parse_args()
    text = render()
    if args.check:
        same = OUTPUT.is_file() and OUTPUT.read_text() == text
        print(f"{OUTPUT}: {'up to date' if same else 'OUT OF DATE: run scripts/gen_kibana.py'}")
        return 0 if same else 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({text.count(chr(10)) - 1} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
