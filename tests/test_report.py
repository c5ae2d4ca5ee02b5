"""`kubehunt report` and `kubehunt hunts list|test`, the report against the real Elasticsearch node.

Documents are the pipeline's own (generated corpus -> parse -> ECS -> tag), indexed into a unique data
stream matching the project's index templates (installed with pipeline.setup.install_templates). The
oracle is a plain Counter over the same documents.
"""
from __future__ import annotations

import io
from collections import Counter

import orjson
import pytest

from pipeline.cli import main

from transforms.ecs import Normaliser
from transforms.hunts import HuntSettings, load_catalogue
from transforms.parse import records


def _tagged_docs(events: int = 3000, seed: int = 11) -> list[dict]:
    import tests.builders.corpus as gen
    normaliser, catalogue = Normaliser(), load_catalogue(HuntSettings())
    docs = []
    for event, _ in gen.generate(events, seed):
        for record, envelope in records("audit", orjson.dumps(event)):
            doc = normaliser.to_ecs("audit", record, envelope)
            catalogue.tag(doc)
            docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def audit_stream(es, request):
    """A unique data stream `logs-kubernetes.audit_logs-kh<id>` holding tagged corpus documents."""
    import uuid

    from elasticsearch import helpers

    from pipeline.setup import install_templates

    name = f"logs-kubernetes.audit_logs-kh{uuid.uuid4().hex[:10]}"
    # The report runs on the project's own templates: if they cannot be installed, that is a failure
    # (a plain index here once kept this module green while the templates were broken).
    install_templates(es)
    kind = "data_stream"
    docs = _tagged_docs()
    actions = [{"_op_type": "create", "_index": name, "_id": d["event"]["id"], "_source": d} for d in docs]
    ok, errors = helpers.bulk(es, actions, refresh=True, raise_on_error=False)
    assert not errors and ok == len(docs)
    yield name, docs, kind
    if kind == "data_stream":
        es.indices.delete_data_stream(name=name)
    else:
        es.indices.delete(index=name)


def _cli(*argv) -> tuple[int, str]:
    import contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _parse_table(text: str) -> list[list[str]]:
    lines = text.splitlines()
    sep = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    widths = [len(chunk) for chunk in lines[sep].split("  ")]
    rows = []
    for line in lines[sep + 1:]:
        cells, pos = [], 0
        for w in widths:
            cells.append(line[pos:pos + w].strip())
            pos += w + 2
        rows.append(cells)
    return rows


@pytest.mark.elasticsearch
def test_documents_land_in_a_data_stream_from_the_project_templates(audit_stream, es):
    name, docs, kind = audit_stream
    info = es.indices.get_data_stream(name=name)["data_streams"][0]
    assert info["template"].startswith("kubehunt")


@pytest.mark.elasticsearch
def test_secret_access_report_ranks_account_verb_namespace_like_a_counter(audit_stream, es_url):
    name, docs, _ = audit_stream
    hunt_id = "secret-access-unexpected-sa"
    expected = Counter()
    for d in docs:
        if hunt_id in d.get("kubehunt", {}).get("hunts", []):
            user = d["user"]
            expected[(user["name"], user.get("effective", {}).get("name", "-"), d["event"]["action"],
                      d.get("orchestrator", {}).get("namespace", "cluster"))] += 1
    assert expected and max(expected.values()) > 1, "the corpus has repeated (account, verb, namespace)"
    code, out = _cli("report", "secret-access", "--top", "30", "--index", name, "--es-url", es_url)
    assert code == 0, out
    assert f"{sum(expected.values())} tagged requests in {name}" in out
    rows = _parse_table(out)
    assert len(rows) == min(30, len(expected))
    counts = [int(r[0]) for r in rows]
    assert counts == sorted(counts, reverse=True)
    assert counts == sorted(expected.values(), reverse=True)[:len(rows)]
    for row in rows:
        assert expected[tuple(row[1:])] == int(row[0]), row


@pytest.mark.elasticsearch
def test_report_since_filters_by_event_time(audit_stream, es_url):
    name, _, _ = audit_stream
    code, out = _cli("report", "pod-exec", "--since", "2100-01-01", "--index", name, "--es-url", es_url)
    assert code == 0 and "0 tagged requests" in out


@pytest.mark.elasticsearch
def test_single_field_ranking_uses_a_terms_aggregation(audit_stream, es_url):
    name, docs, _ = audit_stream
    expected = Counter(d["user"]["name"] for d in docs if "csr-approved" in d.get("kubehunt", {}).get("hunts", []))
    code, out = _cli("report", "csr-approved", "--index", name, "--es-url", es_url)
    assert code == 0 and f"{sum(expected.values())} tagged requests" in out
    assert {(r[1], int(r[0])) for r in _parse_table(out)} == set(expected.items())


def test_report_unknown_hunt_is_a_configuration_error(capsys):
    assert main(["report", "no-such-hunt"]) == 2
    assert "unknown hunt 'no-such-hunt'" in capsys.readouterr().err


def test_hunts_list_shows_every_hunt():
    code, out = _cli("hunts", "list")
    assert code == 0
    for hunt in load_catalogue(HuntSettings()).hunts:
        assert hunt.hunt.id in out
    assert f"{len(load_catalogue(HuntSettings()).hunts)} hunts" in out
    assert "  known_debugger_procs = gdb,lldb,strace,ltrace" in out
    code, out = _cli("hunts", "list", "--hunt-list", "known_memfd_users=java")
    assert code == 0 and "  known_memfd_users = java" in out


def test_hunts_test_runs_every_example_and_fails_on_a_wrong_one(tmp_path):
    code, out = _cli("hunts", "test")
    assert code == 0 and ", 0 failed" in out
    import yaml

    import mappings
    data = yaml.safe_load(mappings.path("hunts", "pod-exec.yaml").read_text())
    data["examples"]["no_match"].append(data["examples"]["match"][0])
    (tmp_path / "pod-exec.yaml").write_text(yaml.safe_dump(data))
    code, out = _cli("hunts", "test", "--hunts-dir", str(tmp_path))
    assert code == 1 and "FAIL  pod-exec:no_match[2]" in out


@pytest.mark.elasticsearch
def test_report_counts_requests_not_stages_and_honours_audit_index(es, es_url):
    """Documents of one request at two stages, tagged by hand on both (as a run before one-match-per-
    request did): the report counts the request once, and searches the stream --audit-index names."""
    import uuid

    from elasticsearch import helpers

    name = f"kh-report-{uuid.uuid4().hex[:10]}"
    es.indices.create(index=name, mappings={"dynamic_templates": [
        {"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}]})
    try:
        docs = []
        for n, user in enumerate(["alice", "alice", "bob"]):
            for stage in ("RequestReceived", "ResponseComplete"):
                docs.append({"@timestamp": "2026-01-15T14:00:00Z", "user": {"name": user},
                             "event": {"action": "create", "dataset": "kubernetes.audit_logs"},
                             "orchestrator": {"namespace": "shop", "resource": {"type": "roles"}},
                             "kubernetes": {"audit": {"auditID": f"req-{n}", "stage": stage}},
                             "kubehunt": {"hunts": ["rbac-modification"]}})
        helpers.bulk(es, [{"_index": name, "_source": d} for d in docs], refresh="wait_for")
        code, out = _cli("report", "rbac-modification", "--audit-index", name, "--es-url", es_url)
        assert code == 0, out
        assert f"3 tagged requests in {name}" in out
        assert [(r[0], r[1]) for r in _parse_table(out)] == [("2", "alice"), ("1", "bob")]
    finally:
        es.indices.delete(index=name)
