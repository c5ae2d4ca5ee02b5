"""`kubehunt backfill` into the real Elasticsearch node: killed with SIGKILL part way and run again,
and re-run after the data streams rolled over: every event of the range ends up exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elasticsearch import ApiError

from pipeline.cli import main
from tests.backfill_corpus import SINCE, UNTIL, build, oracle
from tests.es_helpers import audit_items, chunks, ids_in, run_sink
from transforms.elasticsearch import EsSettings

pytestmark = pytest.mark.elasticsearch
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("three-days-es")
    build(directory)
    expected = oracle(directory, SINCE, UNTIL)
    return directory, expected


def _args(corpus_dir: Path, es_url: str, name: str, summary: Path) -> list[str]:
    return ["backfill", "--since", SINCE, "--until", UNTIL, "--rotation-slack", "2m", "--progress", "off",
            "--audit", str(corpus_dir / "audit*"), "--falco", str(corpus_dir / "falco*"),
            "--es-url", es_url, "--audit-index", f"logs-kubernetes.audit_logs-{name}",
            "--falco-index", f"logs-falco.alerts-{name}", "--incidents-index", f"kubehunt-incidents-{name}",
            "--dead-letter-index", f"kubehunt-dead-letters-{name}", "--checkpoint-index", f"kubehunt-checkpoints-{name}",
            "--summary-json", str(summary)]


def _counts(es, name: str) -> tuple[int, int]:
    streams = (f"logs-kubernetes.audit_logs-{name}", f"logs-falco.alerts-{name}")
    es.indices.refresh(index=",".join(streams), ignore_unavailable=True)
    return tuple(es.count(index=s, ignore_unavailable=True)["count"] for s in streams)


def _ids(es, name: str, source: str) -> list[str]:
    stream = f"logs-kubernetes.audit_logs-{name}" if source == "audit" else f"logs-falco.alerts-{name}"
    return ids_in(es, stream)


def test_backfill_killed_part_way_then_run_twice_more_holds_every_event_once(es, es_url, corpus, unique_name, tmp_path):
    directory, expected = corpus
    total = len(expected["audit"]) + len(expected["falco"])
    args = _args(directory, es_url, unique_name, tmp_path / "s.json")
    # Small bulk requests, one at a time: the writes of the first run take a few seconds to kill into.
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args, "--es-batch-docs", "5",
                             "--es-concurrency", "1", "--chunk-lines", "20"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    at_kill = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            at_kill = sum(_counts(es, unique_name))
        except ApiError:   # the data stream is being created: its shard is not searchable yet
            at_kill = 0
        if at_kill > 0:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the first run was not killed part way: {proc.stderr.read()[-2000:]}"
    assert 0 < at_kill < total
    assert main(args) == 0
    second = json.loads((tmp_path / "s.json").read_text())
    assert second["backfill"]["rerun"] is True
    assert main(args) == 0
    assert sorted(_ids(es, unique_name, "audit")) == sorted(set(_ids(es, unique_name, "audit")))
    assert _counts(es, unique_name) == (len(expected["audit"]), len(expected["falco"]))
    audit_ids = {h["_source"]["kubernetes"]["audit"]["auditID"] for h in es.search(
        index=f"logs-kubernetes.audit_logs-{unique_name}", size=10_000, source=["kubernetes.audit.auditID"])["hits"]["hits"]}
    assert audit_ids == expected["audit"]


def test_rerun_after_a_rollover_writes_no_second_copy_into_the_new_backing_index(es, es_url, corpus, unique_name, tmp_path):
    directory, expected = corpus
    args = _args(directory, es_url, unique_name, tmp_path / "s.json")
    assert main(args) == 0
    first = _counts(es, unique_name)
    assert first == (len(expected["audit"]), len(expected["falco"]))
    # As after a run killed between its last write and its checkpoint: the files are known, not finished.
    es.update_by_query(index=f"kubehunt-checkpoints-{unique_name}", refresh=True,
                       script={"source": "ctx._source.status = 'started'"}, query={"match_all": {}})
    for stream in (f"logs-kubernetes.audit_logs-{unique_name}", f"logs-falco.alerts-{unique_name}"):
        es.indices.rollover(alias=stream)
        assert len(es.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]) == 2
    assert main(args) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert _counts(es, unique_name) == first
    assert summary["written"]["already_present"] == {"audit": first[0], "falco": first[1]}
    assert summary["written"]["indexed"] == {"audit": 0, "falco": 0}


def test_without_the_lookup_a_rollover_duplicates_and_with_it_does_not(es, es_url, unique_name):
    """The fact the look-up exists for: `create` of an existing id succeeds in a new backing index."""
    stream = f"logs-kubernetes.audit_logs-{unique_name}"
    indices = (("audit", stream), ("falco", f"logs-falco.alerts-{unique_name}"),
               ("incidents", f"kubehunt-incidents-{unique_name}"), ("dead_letters", f"kubehunt-dead-letters-{unique_name}"))
    from pipeline.setup import ensure_destinations

    ensure_destinations(EsSettings(hosts=(es_url,), indices=indices))
    items = audit_items(300)
    plain = EsSettings(hosts=(es_url,), indices=indices)
    run_sink(plain, chunks(items))
    # The look-up is a search, near-real-time: a re-run after a kill meets documents refreshed long ago.
    es.indices.refresh(index=stream)
    es.indices.rollover(alias=stream)
    counters = run_sink(EsSettings(hosts=(es_url,), indices=indices, dedupe_existing=True), chunks(items))
    assert len(ids_in(es, stream)) == 300
    assert counters["present.audit"] == 300 and counters["es.received.audit"] == 300
    run_sink(plain, chunks(items))
    assert len(ids_in(es, stream)) == 600     # the duplicate the look-up prevents
