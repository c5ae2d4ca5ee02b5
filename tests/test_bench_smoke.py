"""`scripts/bench.py --quick` runs end to end (CI smoke test: it asserts that the benchmark works, not
what it measures)."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import ROOT


def test_the_benchmark_runs_and_prints_every_row():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in ("machine:", "corpus:", "floor", "job, 1 worker", "job, 2 workers", "growth 1,000", "growth 3,000"):
        assert row in proc.stdout, f"missing row {row!r} in:\n{proc.stdout}"
    assert "NOT BALANCED" not in proc.stdout
    # CPU per event of the whole process tree (workers included): measured, so never zero.
    for row in ("floor", "job, 1 worker", "job, 2 workers"):
        line = next(line for line in proc.stdout.splitlines() if line.startswith(row))
        cpu = re.search(r"CPU ([\d,.]+) us/event", line)
        assert cpu and float(cpu.group(1).replace(",", "")) > 0, line
