"""Helpers shared by tests: run the CLI in-process and read what the file sink wrote."""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import orjson

from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "data" / "demo"


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def read_ndjson(directory: str | os.PathLike, name: str) -> list[dict]:
    docs = []
    for path in sorted(glob.glob(os.path.join(str(directory), f"{name}*.ndjson"))):
        with open(path, "rb") as fh:
            docs.extend(orjson.loads(line) for line in fh if line.strip())
    return docs


def run_to_dir(tmp_path: Path, *args: str) -> tuple[int, dict, Path]:
    """Run `kubehunt run ... --output-dir` and return (exit code, summary dict, output dir)."""
    out = tmp_path / "out"
    summary = tmp_path / "summary.json"
    code = run_cli("run", *args, "--output-dir", out, "--summary-json", summary)
    return code, json.loads(summary.read_text()) if summary.exists() else {}, out
