"""`kubehunt run` into the real Elasticsearch: set-up on first use, books that balance per destination,
a re-run that duplicates nothing, mapping rejections dead-lettered with their reason."""
from __future__ import annotations

import json

import orjson
import pytest

from tests.es_helpers import _delete_test_indices, ids_in  # noqa: F401 (autouse fixture)
from tests.helpers import DEMO, read_ndjson, run_cli, run_to_dir

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]


def _run(es_url, name, tmp_path, *extra) -> tuple[int, dict]:
    summary = tmp_path / f"summary-{len(list(tmp_path.glob('summary-*')))}.json"
    code = run_cli("run", "--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json", "--es-url", es_url,
                   "--audit-index", f"h6-{name}-audit", "--falco-index", f"h6-{name}-falco",
                   "--incidents-index", f"h6-{name}-incidents", "--dead-letter-index", f"h6-{name}-dead-letters",
                   "--summary-json", summary, *extra)
    return code, json.loads(summary.read_text())


def test_a_run_balances_per_destination_and_a_rerun_finds_everything_present(es_url, es, unique_name, tmp_path):
    code, first = _run(es_url, unique_name, tmp_path)
    assert code == 0 and first["balanced"]
    assert set(first["destinations"]) == {"audit", "falco", "incidents"}
    assert all(d["balanced"] and d["received"] > 0 for d in first["destinations"].values())
    for source in ("audit", "falco"):
        assert first["written"]["indexed"][source] == first["events"][source] > 0
        assert len(set(ids_in(es, f"h6-{unique_name}-{source}"))) == first["events"][source]
    es.indices.refresh(index=f"h6-{unique_name}-incidents")
    assert first["incidents"]["written"] == es.count(index=f"h6-{unique_name}-incidents")["count"] > 0
    # Set up on first use: the dead-letter index exists, with its never-reject mapping.
    dl = f"h6-{unique_name}-dead-letters"
    assert es.indices.get_mapping(index=dl)[dl]["mappings"]["dynamic"] == "false"

    code, second = _run(es_url, unique_name, tmp_path)
    assert code == 0 and second["balanced"]
    for source in ("audit", "falco"):
        assert second["written"]["indexed"][source] == 0
        assert second["written"]["already_present"][source] == first["events"][source]
        assert len(ids_in(es, f"h6-{unique_name}-{source}")) == first["events"][source]
    assert second["incidents"]["written"] == first["incidents"]["written"]
    assert es.count(index=f"h6-{unique_name}-incidents")["count"] == first["incidents"]["written"]


def test_no_setup_leaves_the_destinations_alone(es_url, es, unique_name, tmp_path):
    code, summary = _run(es_url, unique_name, tmp_path, "--no-setup", "--no-correlation")
    assert code == 0 and summary["balanced"]
    # Nothing was dead-lettered, so with --no-setup nobody created the dead-letter index.
    assert not es.indices.exists(index=f"h6-{unique_name}-dead-letters")


def test_events_the_mapping_rejects_are_dead_lettered_and_the_rest_indexed(es_url, es, unique_name, tmp_path):
    # Oracle: the documents the file sink writes; those with a non-numeric objectRef.name must be
    # rejected by an audit index that maps that field as a number.
    code, _, out = run_to_dir(tmp_path, "--audit", DEMO / "audit.log", "--no-correlation")
    assert code == 0
    docs = read_ndjson(out, "events")
    rejected = {d["event"]["id"] for d in docs
                if not str(d.get("kubernetes", {}).get("audit", {}).get("objectRef", {}).get("name", "0")).isdigit()}
    assert 0 < len(rejected) < len(docs)
    audit = f"h6-{unique_name}-audit"
    es.indices.create(index=audit, mappings={"properties": {"kubernetes": {"properties": {"audit": {"properties": {
        "objectRef": {"properties": {"name": {"type": "long"}}}}}}}}})

    code, summary = _run(es_url, unique_name, tmp_path, "--no-correlation")
    assert code == 0 and summary["balanced"]
    assert summary["dead_letters"]["index"] == len(rejected)
    assert summary["destinations"]["audit"] == {"received": len(docs), "indexed": len(docs) - len(rejected),
                                                "already_present": 0, "dead_lettered": len(rejected),
                                                "balanced": True}
    assert summary["written"]["indexed"]["audit"] == len(docs) - len(rejected)
    assert set(ids_in(es, audit)) == {d["event"]["id"] for d in docs} - rejected
    dl = f"h6-{unique_name}-dead-letters"
    es.indices.refresh(index=dl)
    letters = [h["_source"]["kubehunt"]["dead_letter"] for h in
               es.search(index=dl, size=1000, query={"term": {"kubehunt.dead_letter.stage": "index"}})["hits"]["hits"]]
    assert {letter["doc_id"] for letter in letters} == rejected
    for letter in letters:
        assert "failed to parse field [kubernetes.audit.objectRef.name] of type [long]" in letter["reason"]
        assert orjson.loads(letter["raw"])["event"]["id"] == letter["doc_id"]
