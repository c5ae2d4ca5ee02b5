"""The demo job into the real Elasticsearch: everything lands once, a re-run duplicates nothing."""
from __future__ import annotations

import json

import pytest

from tests.helpers import DEMO, run_cli

pytestmark = pytest.mark.elasticsearch


def _run(es_url, names, tmp_path, tag):
    summary = tmp_path / f"summary-{tag}.json"
    code = run_cli("run", "--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json", "--es-url", es_url,
                   "--audit-index", names["audit"], "--falco-index", names["falco"],
                   "--incidents-index", names["incidents"], "--dead-letter-index", names["dead"],
                   "--summary-json", summary)
    return code, json.loads(summary.read_text())


def test_demo_lands_in_elasticsearch_once_even_when_run_twice(es, es_url, unique_name, tmp_path):
    names = {"audit": f"logs-kubernetes.audit_logs-t{unique_name}", "falco": f"logs-falco.alerts-t{unique_name}",
             "incidents": f"kubehunt-incidents-t{unique_name}", "dead": f"kubehunt-dead-letters-t{unique_name}"}
    audit_lines = sum(1 for line in (DEMO / "audit.log").read_bytes().splitlines() if line.strip())
    falco_lines = sum(1 for line in (DEMO / "falco.json").read_bytes().splitlines() if line.strip())

    code, first = _run(es_url, names, tmp_path, "first")
    assert code == 0 and first["balanced"]
    es.indices.refresh(index=f"{names['audit']},{names['falco']}")
    assert es.count(index=names["audit"])["count"] == audit_lines == first["written"]["indexed"]["audit"]
    assert es.count(index=names["falco"])["count"] == falco_lines == first["written"]["indexed"]["falco"]
    # Every hunt the summary counted is searchable by its tag.
    for hunt_id, count in first["hunts"].items():
        found = es.count(index=f"{names['audit']},{names['falco']}", query={"term": {"kubehunt.hunts": hunt_id}})
        assert found["count"] == count, hunt_id

    code, second = _run(es_url, names, tmp_path, "second")
    assert code == 0 and second["balanced"]
    es.indices.refresh(index=f"{names['audit']},{names['falco']}")
    assert es.count(index=names["audit"])["count"] == audit_lines
    assert es.count(index=names["falco"])["count"] == falco_lines
    assert second["written"]["already_present"] == {"audit": audit_lines, "falco": falco_lines}
    assert second["written"]["indexed"] == {"audit": 0, "falco": 0}
