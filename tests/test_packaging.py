"""The package as a remote worker receives it: built into a wheel (what `--extra_package` ships, and
what `--setup_file` builds on the worker), installed into a fresh virtualenv, and the whole pipeline
run from there on the multi-process runner, from a directory where the checkout is not importable."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import orjson
import pytest

from tests.helpers import DEMO, ROOT

pytestmark = pytest.mark.slow


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{cmd[:4]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_the_built_wheel_installed_in_a_fresh_venv_runs_the_pipeline_on_the_multi_process_runner(tmp_path):
    dist = tmp_path / "dist"
    # Offline: the build backend (setuptools) comes from the project's venv, not from an index.
    _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-w", dist])
    wheel = next(dist.glob("kubehunt-*.whl"))
    venv = tmp_path / "worker-venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(glob.glob(str(venv / "lib" / "python*" / "site-packages"))[0])
    # The dependencies (Beam, orjson, the client) as a worker image would hold them: the project venv's
    # site-packages as a plain path (its .pth files, among them the editable kubehunt, are not run).
    (site / "worker-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([python, "-c", "import pipeline.cli, transforms.hunts, mappings; print(pipeline.cli.__file__)"],
                 cwd=elsewhere, env=env).stdout.strip()
    assert where.startswith(str(site)), where  # the installed copy, not the checkout

    out = elsewhere / "out"
    _run([python, "-m", "pipeline.cli", "run", "--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json",
          "--pods", DEMO / "pods.json", "--output-dir", out, "--summary-json", elsewhere / "summary.json",
          "--direct_running_mode=multi_processing", "--direct_num_workers=2"], cwd=elsewhere, env=env)
    summary = orjson.loads((elsewhere / "summary.json").read_bytes())
    lines = {s: sum(1 for line in open(DEMO / f, "rb") if line.strip())
             for s, f in (("audit", "audit.log"), ("falco", "falco.json"))}
    assert summary["balanced"] and summary["events"] == lines
    # The hunts and mappings shipped as package data: every hunt the checkout has is loaded.
    assert sum(summary["hunts"].values()) > 0
    incidents = [orjson.loads(line) for p in out.glob("incidents*.ndjson") for line in open(p, "rb")]
    assert incidents and all(i["kubehunt"]["incident"]["confirmed"] for i in incidents)
