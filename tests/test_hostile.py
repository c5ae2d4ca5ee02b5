"""Hostile input through the whole pipeline (`kubehunt run`), to --output-dir and into the real node.

A seeded generator (tests/hostile.py) mixes good lines with deep nesting at and around MAX_DEPTH,
lines at and past --max-line-bytes, invalid UTF-8, NUL, odd numbers, duplicate/dotted/empty keys,
wrong types at every source field of the ECS mappings, misleading compression names and truncated
archives. The inputs are named several times over (a folder, a glob, each file, a symlinked folder).
Asserted: exit 0; every good line indexed exactly once; every bad line dead-lettered exactly once
with a reason naming the field or the limit; a hostile-but-storable line ends as exactly one of the
two; the books balance, and their totals match the corpus (an oracle independent of the counters).

Under CI=true a fixed seed and a small sample (seconds); elsewhere a random seed (printed on
failure; set KUBEHUNT_HOSTILE_SEED to replay) and every (field, wrong value) pair.
"""
from __future__ import annotations

import json
import os
import random

import orjson
import pytest

from tests import hostile
from tests.helpers import read_ndjson, run_cli
from transforms.ecs import Normaliser

CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("KUBEHUNT_HOSTILE_SEED") or (13 if CI else random.randrange(1 << 30)))
GOOD_LINES, WRONG_TYPE_SAMPLE = (120, 60) if CI else (1500, None)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    corpus = hostile.generate(SEED, GOOD_LINES, WRONG_TYPE_SAMPLE).write(folder / "in")
    (folder / "audit-link").symlink_to(folder / "in" / "audit", target_is_directory=True)
    return folder, corpus


def _inputs(folder) -> list[str]:
    audit = sorted(str(p) for p in (folder / "in" / "audit").iterdir())
    falco = sorted(str(p) for p in (folder / "in" / "falco").iterdir())
    # Every file named several times: the folder, a glob, itself, through a symlinked folder, relative.
    return ["--audit", str(folder / "in" / "audit"), str(folder / "in" / "audit" / "*.log"), *audit,
            str(folder / "audit-link"), str(folder / "in" / "audit" / ".." / "audit" / audit[0].rsplit("/", 1)[1]),
            "--falco", str(folder / "in" / "falco"), *falco,
            "--max-line-bytes", str(hostile.MAX_LINE_BYTES)]


def _expected_records(corpus) -> int:
    # Each case line is one record; each truncated file gives its kept lines plus one dead letter.
    return len(corpus.cases) + sum(len(kept) + 1 for _, _, kept, _ in corpus.files)


def _check(corpus, summary, docs, letters):
    assert summary["balanced"], f"seed {SEED}: books do not balance"
    assert summary["records_read"] == summary["records_accounted"] == _expected_records(corpus), f"seed {SEED}"
    problems = hostile.account(corpus, docs, letters)
    assert problems == [], f"seed {SEED}: {len(problems)} problems:\n" + "\n".join(problems[:40])


def test_hostile_input_to_files_loses_nothing_and_every_reason_names_its_field_or_limit(corpus_dir, tmp_path):
    folder, corpus = corpus_dir
    code = run_cli("run", *_inputs(folder), "--output-dir", tmp_path / "out", "--summary-json", tmp_path / "s.json")
    assert code == 0, f"seed {SEED}"
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["files_read"] == {"audit": 6, "falco": 3}   # each read once, whatever its names
    docs = read_ndjson(tmp_path / "out", "events")
    letters = [d["kubehunt"]["dead_letter"] for d in read_ndjson(tmp_path / "out", "dead-letters")]
    _check(corpus, summary, docs, letters)


@pytest.mark.elasticsearch
@pytest.mark.slow
def test_hostile_input_into_elasticsearch_is_all_stored_or_dead_lettered_with_its_reason(
        corpus_dir, tmp_path, es_url, es, unique_name):
    from elasticsearch.helpers import scan

    folder, corpus = corpus_dir
    # The real templates: event destinations that match them (data streams), as in production.
    idx = {"audit": f"logs-kubernetes.audit_logs-hx{unique_name}", "falco": f"logs-falco.alerts-hx{unique_name}",
           "incidents": f"hx{unique_name}-incidents", "dead": f"hx{unique_name}-dead-letters"}
    code = run_cli("run", *_inputs(folder), "--es-url", es_url, "--summary-json", tmp_path / "s.json",
                   "--audit-index", idx["audit"], "--falco-index", idx["falco"],
                   "--incidents-index", idx["incidents"], "--dead-letter-index", idx["dead"])
    assert code == 0, f"seed {SEED}"
    summary = json.loads((tmp_path / "s.json").read_text())
    assert all(d["balanced"] for d in summary["destinations"].values())
    es.indices.refresh(index=",".join(idx.values()))
    everything = {"query": {"match_all": {}}}
    docs = [h["_source"] for kind in ("audit", "falco") for h in scan(es, index=idx[kind], query=everything)]
    letters = [h["_source"]["kubehunt"]["dead_letter"] for h in scan(es, index=idx["dead"], query=everything)]
    assert len(docs) == summary["written"]["indexed"]["audit"] + summary["written"]["indexed"]["falco"]
    _check(corpus, summary, docs, letters)


# --- values that once crashed the ECS stage --------------------------------------------------------

@pytest.mark.parametrize("field", ["resource", "subresource"])
def test_a_list_at_objectref_resource_is_normalised_not_a_crash(field):
    event = hostile.audit_event("case-000001")
    event["objectRef"][field] = []
    doc = Normaliser().to_ecs("audit", event)
    assert doc["event"]["category"][0] == "api" and "process" not in doc["event"]["category"]
    orjson.dumps(doc)


def test_a_huge_integral_float_at_a_long_field_is_dropped_and_the_document_serialises():
    alert = hostile.falco_alert("case-000001")
    alert["output_fields"]["proc.pid"] = -1.5e300
    doc = Normaliser().to_ecs("falco", alert)
    assert "pid" not in doc.get("process", {})
    assert orjson.loads(orjson.dumps(doc))["falco"]["output_fields"]["proc.pid"] == -1.5e300


def test_the_generator_covers_every_source_field_of_both_mappings():
    fields = hostile.source_fields("kubernetes.audit_logs") + hostile.source_fields("falco.alerts")
    assert "user.username" in fields and "of:proc.name" in fields and len(fields) > 60
    full = hostile.generate(1, 0, None).corpus.cases
    described = " ".join(c.what for c in full)
    missing = [f for f in fields if f" {f.removeprefix('of:')} is " not in described]
    assert missing == []
