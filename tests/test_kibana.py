"""Kibana saved searches (mappings/kibana/saved-searches.ndjson): no drift, valid structure, working queries.

No Kibana can run here, so each saved search's KQL (`field : "value"`, the only form the generator writes)
is translated to the equivalent term query and run against the real Elasticsearch over documents the
pipeline made from each hunt's own match examples (indexed into unique data streams that the saved
search's data view pattern covers).
"""
from __future__ import annotations

import fnmatch
import json
import re
import uuid

import pytest

import mappings

from transforms.ecs import Normaliser
from transforms.hunts import HuntSettings, load_catalogue, load_hunts
from pipeline.search import field_value

FILE = mappings.path("kibana", "saved-searches.ndjson")
HUNTS = load_hunts()
KQL = re.compile(r'^([\w.@]+) : (?:"([^"\\]*)"|(true|false))$')


def _gen():
    import scripts.gen_kibana
    return scripts.gen_kibana


def objects() -> list[dict]:
    return [json.loads(line) for line in FILE.read_text().splitlines()]


def test_saved_searches_file_is_regenerated_without_drift():
    assert FILE.read_text() == _gen().render(), "run scripts/gen_kibana.py and commit the result"


def _by_id() -> dict[str, dict]:
    *objs, _ = objects()
    return {o["id"]: o for o in objs}


def test_export_structure_one_search_per_hunt_and_referenced_data_views_exist():
    *objs, summary = objects()
    assert summary["exportedCount"] == len(objs) and summary["missingRefCount"] == 0
    assert {o["type"] for o in objs} == {"index-pattern", "search", "dashboard"}
    views = {o["id"]: o for o in objs if o["type"] == "index-pattern"}
    searches = {o["id"]: o for o in objs if o["type"] == "search"}
    assert {v["attributes"]["title"] for v in views.values()} == {
        "logs-kubernetes.audit_logs-*", "logs-falco.alerts-*", "kubehunt-incidents*", "kubehunt-dead-letters*"}
    assert all(v["attributes"]["timeFieldName"] == "@timestamp" for v in views.values())
    assert sorted(i for i in searches if i.startswith("kubehunt-hunt-")) == sorted(f"kubehunt-hunt-{h.id}" for h in HUNTS)
    for hunt in HUNTS:
        search = searches[f"kubehunt-hunt-{hunt.id}"]
        attrs = search["attributes"]
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"] == {"query": f'kubehunt.hunts : "{hunt.id}"', "language": "kuery"}
        (ref,) = search["references"]
        assert ref["name"] == source["indexRefName"] and ref["type"] == "index-pattern" and ref["id"] in views
        assert fnmatch.fnmatch(f"logs-{hunt.source}-default", views[ref["id"]]["attributes"]["title"])
        assert attrs["columns"] == [f for _, f in hunt.fields if f != "@timestamp"]
        assert attrs["sort"] == [["@timestamp", "desc"]] and hunt.id in attrs["title"]
        assert hunt.title in attrs["title"] and hunt.hypothesis in attrs["description"]


def test_kibana_812_versions_and_stable_unique_ids():
    *objs, _ = objects()
    expected = {"index-pattern": "8.0.0", "search": "8.0.0", "dashboard": "8.9.0"}
    for o in objs:
        assert o["coreMigrationVersion"] == "8.8.0" and o["typeMigrationVersion"] == expected[o["type"]], o["id"]
        assert o["managed"] is False and o["id"].startswith("kubehunt-")
    assert len({o["id"] for o in objs}) == len(objs)


def test_every_reference_resolves_including_the_dashboards_lens_panels():
    by_id = _by_id()
    for o in by_id.values():
        for ref in o["references"]:
            assert ref["id"] in by_id and by_id[ref["id"]]["type"] == ref["type"], (o["id"], ref)
    (board,) = [o for o in by_id.values() if o["type"] == "dashboard"]
    panels = json.loads(board["attributes"]["panelsJSON"])
    names = {r["name"] for r in board["references"]}
    titles = set()
    for panel in panels:
        attrs = panel["embeddableConfig"]["attributes"]
        assert panel["type"] == "lens" and attrs["type"] == "lens"
        titles.add(panel["title"])
        layers = attrs["state"]["datasourceStates"]["formBased"]["layers"]
        for ref in attrs["references"]:
            assert f"{panel['panelIndex']}:{ref['name']}" in names
            assert ref["name"].removeprefix("indexpattern-datasource-layer-") in layers
        for layer in layers.values():
            assert set(layer["columnOrder"]) == set(layer["columns"])
    assert {"Incidents over time", "Confirmed incidents", "Dead letters over time, by stage"} <= titles
    assert any(t.startswith("Hunt matches by hunt") for t in titles)


def test_incident_searches_and_data_views_for_incidents_and_dead_letters():
    by_id = _by_id()
    for search_id in ("kubehunt-incidents-all", "kubehunt-incidents-confirmed"):
        (ref,) = by_id[search_id]["references"]
        assert by_id[ref["id"]]["attributes"]["title"] == "kubehunt-incidents*"
    confirmed = json.loads(by_id["kubehunt-incidents-confirmed"]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert confirmed["query"]["query"] == "kubehunt.incident.confirmed : true"
    assert any(o["attributes"]["title"] == "kubehunt-dead-letters*" for o in by_id.values() if o["type"] == "index-pattern")


def test_kibana_export_is_byte_identical_every_run(tmp_path, capsys):
    from pipeline.cli import main
    assert main(["kibana", "export", "--out", str(tmp_path / "a.ndjson")]) == 0
    assert main(["kibana", "export"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "a.ndjson").read_text() == printed == FILE.read_text()


def kql_to_query(kql: str) -> dict:
    match = KQL.match(kql)
    assert match, f"the test translates only `field : \"value\"` KQL, got {kql!r}"
    return {"term": {match.group(1): match.group(2) if match.group(2) is not None else match.group(3) == "true"}}


@pytest.fixture(scope="module")
def example_streams(es):  # noqa: C901
    """Each hunt's match examples, normalised and tagged, in unique data streams `logs-<dataset>-kk<id>`."""
    from elasticsearch import helpers

    from pipeline.setup import install_templates

    suffix = f"kk{uuid.uuid4().hex[:10]}"
    # On the project's own templates, or a failure: no plain-index fallback that hides broken templates.
    install_templates(es)
    names = {s: f"logs-{s}-{suffix}" for s in ("kubernetes.audit_logs", "falco.alerts")}
    kind = "data_stream"
    normaliser, catalogue = Normaliser(), load_catalogue(HuntSettings())
    expected: dict[str, set[str]] = {}
    actions = []
    for hunt in HUNTS:
        for event in hunt.example_events("match"):
            doc = normaliser.to_ecs(hunt.raw_source, event)
            # Expected per hunt: every seeded document tagged with it (an example of one hunt may match others).
            for hunt_id in catalogue.tag(doc):
                expected.setdefault(hunt_id, set()).add(doc["event"]["id"])
            assert hunt.id in expected and doc["event"]["id"] in expected[hunt.id]
            actions.append({"_op_type": "create", "_index": names[hunt.source], "_id": doc["event"]["id"],
                            "_source": doc})
    # Examples shared by several hunts are the same document: index it once.
    unique = {(a["_index"], a["_id"]): a for a in actions}
    ok, errors = helpers.bulk(es, list(unique.values()), refresh=True, raise_on_error=False)
    assert not errors
    yield names, expected
    for name in names.values():
        if kind == "data_stream":
            es.indices.delete_data_stream(name=name)
        else:
            es.indices.delete(index=name)


@pytest.mark.elasticsearch
@pytest.mark.parametrize("hunt", HUNTS, ids=[h.id for h in HUNTS])
def test_saved_search_query_finds_the_hunts_seeded_documents(hunt, es, example_streams):
    names, expected = example_streams
    search = next(o for o in objects() if o.get("id") == f"kubehunt-hunt-{hunt.id}")
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    view = next(o for o in objects() if o.get("id") == search["references"][0]["id"])
    index = names[hunt.source]
    assert fnmatch.fnmatch(index, view["attributes"]["title"])
    hits = es.search(index=index, query=kql_to_query(source["query"]["query"]), size=100)["hits"]["hits"]
    assert {h["_id"] for h in hits} == expected[hunt.id]
    for hit in hits:
        assert "kubehunt" in hit["_source"] and hunt.id in hit["_source"]["kubehunt"]["hunts"]
    # Every analyst column is a field the index maps and that documents carry (a misspelt column would
    # be an empty column in Discover): most on this hunt's own documents, the rest (e.g. the namespace of
    # a cluster-scoped change) on some document of the same data stream.
    columns = search["attributes"]["columns"]
    assert columns == [f for _, f in hunt.fields if f != "@timestamp"]
    caps = es.field_caps(index=index, fields=columns)["fields"]
    own = [c for c in columns if any(field_value(h["_source"], c) is not None for h in hits)]
    assert len(own) * 2 >= len(columns), f"{hunt.id}: most columns are missing on its documents"
    for column in columns:
        assert column in caps, f"{hunt.id}: {column} is not mapped in {index}"
        if column not in own:
            assert es.count(index=index, query={"exists": {"field": column}})["count"] > 0, column


# ---------------------------------------------------------------------------------------------
# kubehunt kibana import. No Kibana can run here: a local HTTP server records the request and answers
# as Kibana's saved-objects import API documents (success, or per-object errors).

class _Recorder:
    def __init__(self, answer: dict, status: int = 200):
        import http.server
        import threading

        recorder = self
        self.requests: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_kibana_import_posts_the_export_with_overwrite_xsrf_and_auth_from_the_environment(monkeypatch, capsys):
    from pipeline.cli import main
    count = len(objects()) - 1
    server = _Recorder({"success": True, "successCount": count})
    monkeypatch.setenv("KUBEHUNT_KIBANA_PASSWORD", "s3cret-pw")
    try:
        code = main(["kibana", "import", "--kibana-url", server.url, "--space", "soc", "--kibana-username", "analyst"])
    finally:
        server.close()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (request,) = server.requests
    assert request["path"] == "/s/soc/api/saved_objects/_import?overwrite=true"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["kbn-xsrf"] and headers["content-type"].startswith("multipart/form-data; boundary=")
    import base64
    assert headers["authorization"] == "Basic " + base64.b64encode(b"analyst:s3cret-pw").decode()
    assert 'name="file"; filename="kubehunt.ndjson"' in request["body"].decode()
    assert FILE.read_text() in request["body"].decode()
    assert f"imported {count} saved objects" in captured.out
    assert "s3cret-pw" not in captured.out + captured.err


def test_kibana_import_lists_each_failed_object(tmp_path, capsys):
    from pipeline.cli import main
    answer = {"success": False, "successCount": 30, "errors": [
        {"id": "kubehunt-hunt-pod-exec", "type": "search", "title": "kubehunt: pod exec",
         "error": {"type": "missing_references", "references": [{"type": "index-pattern", "id": "x"}]}},
        {"id": "kubehunt-dashboard-overview", "type": "dashboard", "meta": {"title": "kubehunt: overview"},
         "error": {"type": "unknown", "message": "boom"}}]}
    server = _Recorder(answer)
    key = tmp_path / "key"
    key.write_text("aWQ6a2V5\n")
    try:
        code = main(["kibana", "import", "--kibana-url", server.url, "--kibana-api-key-file", str(key)])
    finally:
        server.close()
    err = capsys.readouterr().err
    assert code == 1
    assert server.requests[0]["path"] == "/api/saved_objects/_import?overwrite=true"
    assert {k.lower(): v for k, v in server.requests[0]["headers"].items()}["authorization"] == "ApiKey aWQ6a2V5"
    assert "2 failed" in err
    assert "search kubehunt-hunt-pod-exec (kubehunt: pod exec): missing_references (missing index-pattern x)" in err
    assert "dashboard kubehunt-dashboard-overview (kubehunt: overview): unknown: boom" in err


def test_kibana_url_with_credentials_is_a_configuration_error(capsys):
    from pipeline.cli import main
    assert main(["kibana", "import", "--kibana-url", "http://u:pw@127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "--kibana-url" in err and "u:pw" not in err
