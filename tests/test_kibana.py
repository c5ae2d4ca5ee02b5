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

FILE = mappings.path("kibana", "saved-searches.ndjson")
HUNTS = load_hunts()
KQL = re.compile(r'^([\w.@]+) : "([^"\\]*)"$')


def _gen():
    import scripts.gen_kibana
    return scripts.gen_kibana


def objects() -> list[dict]:
    return [json.loads(line) for line in FILE.read_text().splitlines()]


def test_saved_searches_file_is_regenerated_without_drift():
    assert FILE.read_text() == _gen().render(), "run scripts/gen_kibana.py and commit the result"


def test_export_structure_one_search_per_hunt_and_referenced_data_views_exist():
    *objs, summary = objects()
    assert summary["exportedCount"] == len(objs) and summary["missingRefCount"] == 0
    views = {o["id"]: o for o in objs if o["type"] == "index-pattern"}
    searches = {o["id"]: o for o in objs if o["type"] == "search"}
    assert len(views) + len(searches) == len(objs)
    assert {v["attributes"]["title"] for v in views.values()} == {"logs-kubernetes.audit_logs-*", "logs-falco.alerts-*"}
    assert all(v["attributes"]["timeFieldName"] == "@timestamp" for v in views.values())
    assert sorted(searches) == sorted(f"kubehunt-hunt-{h.id}" for h in HUNTS)
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
        for key in ("coreMigrationVersion", "typeMigrationVersion", "managed"):
            assert key in search


def kql_to_query(kql: str) -> dict:
    match = KQL.match(kql)
    assert match, f"the test translates only `field : \"value\"` KQL, got {kql!r}"
    return {"term": {match.group(1): match.group(2)}}


@pytest.fixture(scope="module")
def example_streams(es):
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
    # The analyst columns exist on the documents (at least the ones every example of the hunt sets).
    for hit in hits:
        assert "kubehunt" in hit["_source"] and hunt.id in hit["_source"]["kubehunt"]["hunts"]
