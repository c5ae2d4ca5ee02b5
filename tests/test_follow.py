"""`kubehunt follow`: the incremental join against the scenario's ground truth, bounded state, a replay
after a crash between output and commit, and the whole thing against the real Elasticsearch: bursts
into a watched directory with the API server's rotation and a kill -9 + restart in the middle, every
line indexed exactly once and the incidents those of a batch `kubehunt run` over the same files."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.builders.scenario import MINUTE, generate
from tests.helpers import (ROOT, ecs_docs, expected_summaries, latest, read_ndjson, record_time, run_cli,
                           summary)
from transforms import correlate
from transforms.correlate import Action, AlertSeen, PodFact
from transforms.livejoin import IncrementalJoin

WINDOW_MS = 30 * MINUTE
LATENESS_MS = 10 * MINUTE


def _merged(scenario) -> list[tuple[str, dict]]:
    """Both sources in the order the cluster writes them: by time."""
    rows = [("audit", r) for r in scenario.audit] + [("falco", r) for r in scenario.falco]
    return sorted(rows, key=lambda sr: (record_time(*sr), sr[0]))


def _summary(doc: dict) -> tuple:
    """The incident's summary and its actions."""
    return summary(doc) + (tuple((a["@timestamp"], a["event_id"], a["verb"], a["resource"])
                                 for a in doc["kubehunt"]["incident"]["actions"]),)


# ---------------------------------------------------------------------------------------------
# The incremental join alone


def test_incremental_join_fed_interval_by_interval_finds_the_scenarios_incidents(tmp_path):
    scenario = generate(seed=7, hot_events=3000)
    merged = _merged(scenario)
    inventory = []
    for pod in scenario.pods["items"]:
        meta = pod["metadata"]
        inventory.append((meta["namespace"], meta["name"],
                          f"system:serviceaccount:{meta['namespace']}:{pod['spec'].get('serviceAccountName', 'default')}"))
    join = IncrementalJoin(WINDOW_MS, LATENESS_MS, inventory=inventory, fact_retention_ms=24 * 60 * MINUTE)
    emitted = []
    versions: dict[str, list[int]] = {}
    docs = ecs_docs([r for s, r in merged if s == "audit"], [r for s, r in merged if s == "falco"])
    order = {id(r): i for i, (_, r) in enumerate(merged)}
    positions = [order[id(r)] for r in [r for s, r in merged if s == "audit"] + [r for s, r in merged if s == "falco"]]
    docs = [d for _, d in sorted(zip(positions, docs), key=lambda pd: pd[0])]  # back in time order
    step = 97  # intervals that cut through every case
    for start in range(0, len(docs), step):
        join.add([e for d in docs[start:start + step] for e in correlate.extract(d)])
        for doc in join.advance(now=start):  # one "second" per interval: small changes wait 30
            emitted.append(doc)
            versions.setdefault(doc["event"]["id"], []).append(doc["kubehunt"]["incident"]["version"])
    for doc in join.advance(flush=True):
        emitted.append(doc)
        versions.setdefault(doc["event"]["id"], []).append(doc["kubehunt"]["incident"]["version"])
    got = sorted(summary(d) for d in latest(emitted).values())
    assert got == expected_summaries(scenario)
    # Updated as actions arrive, and versions only move forward.
    assert any(len(v) > 1 for v in versions.values())
    assert all(v == sorted(set(v)) for v in versions.values())


def test_join_state_is_bounded_by_the_window_whatever_the_uptime():
    join = IncrementalJoin(WINDOW_MS, LATENESS_MS)
    sa = "system:serviceaccount:a:web"
    peak = 0
    for minute in range(4 * 60):  # 4 hours (6 x the window) of a request every 6 s, an alert and a pod claim a minute
        t0 = minute * MINUTE
        elements = [Action(sa, t0 + s * 6000, f"e-{minute}-{s}", "get", "pods", (), False) for s in range(10)]
        elements += [AlertSeen("a", f"pod-{minute}", t0, f"alert-{minute}", "r"),
                     PodFact("a", f"pod-{minute}", "pod_claim", sa, t0)]
        join.add(elements)
        join.advance(now=minute)
        sizes = join.sizes()
        peak = max(peak, sizes["actions"])
        assert sizes["alerts"] <= 42 and sizes["pods"] <= 42
    # window + lateness = 40 minutes of actions (plus the interval in hand), never a day's.
    assert 40 * 10 <= peak <= 42 * 10


# ---------------------------------------------------------------------------------------------
# The command, with the file sink


def _write(path: Path, rows, mode="ab"):
    with open(path, mode) as fh:
        for row in rows:
            fh.write(orjson.dumps(row) + b"\n")


def test_a_crash_between_output_and_commit_replays_the_interval_without_duplicates(tmp_path):
    logs, out, state = tmp_path / "logs", tmp_path / "out", tmp_path / "state"
    logs.mkdir()
    demo = (ROOT / "tests" / "data" / "demo" / "audit.log").read_bytes().splitlines(keepends=True)
    (logs / "audit.log").write_bytes(b"".join(demo[:100]))
    args = ["follow", "--audit", logs, "--output-dir", out, "--state-dir", state, "--interval", "0.1s",
            "--max-intervals", "1"]
    assert run_cli(*args) == 0
    # Save the committed state, then let an interval write its output and commit ...
    shutil.copytree(state, tmp_path / "state-before")
    with open(logs / "audit.log", "ab") as fh:
        fh.write(b"".join(demo[100:200]))
    assert run_cli(*args) == 0
    # ... and crash "before the commit": put the old state back; the restart replays that interval
    # (with the lines written since) and rewrites its output files instead of appending to them.
    shutil.rmtree(state)
    shutil.copytree(tmp_path / "state-before", state)
    with open(logs / "audit.log", "ab") as fh:
        fh.write(b"".join(demo[200:]))
    assert run_cli(*args) == 0
    ids = [d["event"]["id"] for d in read_ndjson(out, "events")]
    assert len(ids) == len(set(ids)) == len(demo)


def test_follow_refuses_a_missing_directory_and_a_state_dir_in_use(tmp_path, capsys):
    assert run_cli("follow", "--audit", tmp_path / "nope" / "*.log", "--output-dir", tmp_path / "o",
                   "--state-dir", tmp_path / "s") == 2
    assert "--audit" in capsys.readouterr().err
    from pipeline.follow import _lock
    (tmp_path / "s").mkdir()
    held = _lock(str(tmp_path / "s"))
    try:
        assert run_cli("follow", "--audit", tmp_path, "--output-dir", tmp_path / "o",
                       "--state-dir", tmp_path / "s", "--max-intervals", "1") == 2
        assert "in use" in capsys.readouterr().err
    finally:
        held.close()


# ---------------------------------------------------------------------------------------------
# End to end against the real Elasticsearch


def _ids(es, index) -> list[str]:
    es.indices.refresh(index=index, ignore_unavailable=True)
    resp = es.search(index=index, size=10000, _source=False, sort=["_doc"], ignore_unavailable=True)
    return [h["_id"] for h in resp["hits"]["hits"]]


def _wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.elasticsearch
@pytest.mark.slow
def test_follow_through_bursts_rotation_and_kill_9_indexes_every_line_once_and_finds_the_batch_incidents(
        es_url, es, unique_name, tmp_path):
    scenario = generate(seed=11, hot_events=1500)
    merged = _merged(scenario)
    audit_dir, falco_dir = tmp_path / "audit", tmp_path / "falco"
    audit_dir.mkdir()
    falco_dir.mkdir()
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps(scenario.pods))
    idx = {k: f"fw-{unique_name}-{k}" for k in ("audit", "falco", "incidents", "dead-letters")}
    cmd = [sys.executable, "-m", "pipeline.cli", "follow", "--audit", str(audit_dir), "--falco", str(falco_dir),
           "--pods", str(pods), "--state-dir", str(tmp_path / "state"), "--interval", "0.3s",
           "--fact-retention", "24h", "--es-url", es_url, "--audit-index", idx["audit"],
           "--falco-index", idx["falco"], "--incidents-index", idx["incidents"],
           "--dead-letter-index", idx["dead-letters"], "--summary-json", str(tmp_path / "summary.json")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "follow.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
    bursts = [merged[i * len(merged) // 4:(i + 1) * len(merged) // 4] for i in range(4)]
    written = {"audit": 0, "falco": 0}
    audit_log = audit_dir / "audit.log"
    rotated = audit_dir / "audit-2024-05-01T14-00-00.000.log"
    latencies = []
    try:
        for number, burst in enumerate(bursts):
            if number == 2:
                # The API server rotates: rename, then a new audit.log.
                os.rename(audit_log, rotated)
            last_audit = max(i for i, (source, _) in enumerate(burst) if source == "audit")
            for i, (source, record) in enumerate(burst):
                # Line by line, as the cluster writes them.
                path = audit_log if source == "audit" else falco_dir / "events.json"
                if number == 1 and i == last_audit:
                    # A line written in two parts, intervals apart: read once, when complete.
                    line = orjson.dumps(record) + b"\n"
                    with open(path, "ab") as fh:
                        fh.write(line[:40])
                    time.sleep(1.0)
                    with open(path, "ab") as fh:
                        fh.write(line[40:])
                else:
                    _write(path, [record])
                written[source] += 1
            want = dict(written)
            started = time.monotonic()
            _wait_for(lambda: len(_ids(es, idx["audit"])) == want["audit"]
                      and len(_ids(es, idx["falco"])) == want["falco"], 60, f"burst {number} to be indexed")
            latencies.append(time.monotonic() - started)
            if number == 1:
                proc.kill()  # kill -9, and more lines arrive while it is down
                proc.wait()
            if number == 2:
                with open(rotated, "rb") as src, gzip.open(str(rotated) + ".gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.unlink(rotated)
            if number == 1:
                proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        time.sleep(1.5)  # a few more intervals: the gzip copy is looked at, the join settles
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    for source in ("audit", "falco"):
        ids = _ids(es, idx[source])
        assert len(ids) == len(set(ids)) == written[source]
    # The restarted process's books balance (what it replayed counts as already present).
    assert json.loads((tmp_path / "summary.json").read_text())["balanced"]

    # The batch answer over the same files (the rotated one now gzip-compressed).
    assert run_cli("run", "--audit", audit_dir, "--falco", falco_dir, "--pods", pods,
                   "--output-dir", tmp_path / "batch") == 0
    batch = read_ndjson(tmp_path / "batch", "incidents")
    assert batch and any(d["kubehunt"]["incident"]["confirmed"] for d in batch)
    assert {d["event"]["id"] for d in read_ndjson(tmp_path / "batch", "events")} == set(
        _ids(es, idx["audit"])) | set(_ids(es, idx["falco"]))
    es.indices.refresh(index=idx["incidents"])
    live = [h["_source"] for h in es.search(index=idx["incidents"], size=1000)["hits"]["hits"]]
    assert sorted(_summary(d) for d in live) == sorted(_summary(d) for d in batch)
    assert max(latencies) < 30, latencies
