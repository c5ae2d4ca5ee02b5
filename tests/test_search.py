"""`kubehunt search HUNT_ID` and `kubehunt incidents` against the real Elasticsearch node.

Audit documents are the pipeline's own (generated corpus, held out from the other tests by its seed ->
parse -> ECS -> tag) in a unique index; the oracle is a count over the same documents. Incident
documents have the shape transforms/correlate.py writes (kubehunt.incident.*).
"""
from __future__ import annotations

import contextlib
import io
import uuid

import orjson
import pytest

from pipeline.cli import main
from transforms.ecs import Normaliser
from transforms.hunts import HuntSettings, load_catalogue
from transforms.parse import records

pytestmark = pytest.mark.elasticsearch


def _cli(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def indexed(es):
    import tests.builders.corpus as gen
    from elasticsearch import helpers

    normaliser, catalogue = Normaliser(), load_catalogue(HuntSettings())
    docs = []
    for event, _ in gen.generate(2500, 977):
        for record, envelope in records("audit", orjson.dumps(event)):
            doc = normaliser.to_ecs("audit", record, envelope)
            catalogue.tag(doc)
            docs.append(doc)
    incidents = []
    for n in range(7):
        incidents.append({"@timestamp": f"2026-01-15T14:{n:02d}:00.000Z",
                          "event": {"id": f"inc-{n}", "kind": "alert", "dataset": "kubehunt.incidents"},
                          "kubehunt": {"incident": {
                              "service_account": f"shop:sa-{n}", "sa_source": "inventory", "pod": f"web-{n}",
                              "alert_rule": "Terminal shell in container", "confirmed": n % 3 == 0,
                              "action_count": 1, "hunts": ["rbac-modification"] if n % 3 == 0 else [],
                              "actions": [{"@timestamp": f"2026-01-15T14:{n:02d}:30.000Z", "event_id": f"a-{n}",
                                           "verb": "create", "resource": "rolebindings"}]}}})
    suffix = uuid.uuid4().hex[:10]
    audit, inc = f"kh-search-audit-{suffix}", f"kh-search-incidents-{suffix}"
    mapping = {"dynamic_templates": [{"s": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
               "properties": {"@timestamp": {"type": "date"}}}
    for name in (audit, inc):
        es.indices.create(index=name, mappings=mapping)
    helpers.bulk(es, [{"_index": audit, "_id": d["event"]["id"], "_source": d} for d in docs], refresh="wait_for")
    helpers.bulk(es, [{"_index": inc, "_id": d["event"]["id"], "_source": d} for d in incidents], refresh="wait_for")
    yield audit, docs, inc, incidents
    for name in (audit, inc):
        es.indices.delete(index=name)


@pytest.mark.parametrize("hunt_id", ["secret-access-unexpected-sa", "rbac-modification", "pod-exec"])
def test_search_json_prints_one_document_per_tagged_event(indexed, es_url, hunt_id):
    audit, docs, _, _ = indexed
    expected = {d["event"]["id"] for d in docs if hunt_id in d.get("kubehunt", {}).get("hunts", [])}
    assert expected
    code, out = _cli("search", hunt_id, "--format", "json", "--limit", "10000", "--audit-index", audit,
                     "--es-url", es_url)
    assert code == 0
    printed = [orjson.loads(line) for line in out.splitlines()]
    assert {d["event"]["id"] for d in printed} == expected and len(printed) == len(expected)
    from transforms.ecs import to_epoch_ms
    stamps = [to_epoch_ms(d["@timestamp"]) for d in printed]
    assert stamps == sorted(stamps, reverse=True), "newest first"


def test_search_table_shows_the_hunts_fields_and_honours_limit_and_time(indexed, es_url):
    audit, docs, _, _ = indexed
    hunt = load_catalogue(HuntSettings()).by_id["secret-access-unexpected-sa"]
    code, out = _cli("search", "secret-access", "--limit", "3", "--index", audit, "--es-url", es_url)
    assert code == 0
    header = out.splitlines()[0].split()
    assert header == [label for label, _ in hunt.fields]
    assert "3 events of secret-access-unexpected-sa" in out
    code, out = _cli("search", "secret-access", "--since", "2100-01-01", "--index", audit, "--es-url", es_url)
    assert code == 0 and "0 events" in out


def test_incidents_confirmed_prints_as_many_as_are_confirmed_with_their_actions(indexed, es_url):
    _, _, inc, incidents = indexed
    confirmed = [d for d in incidents if d["kubehunt"]["incident"]["confirmed"]]
    code, out = _cli("incidents", "--confirmed", "--format", "json", "--incidents-index", inc, "--es-url", es_url)
    assert code == 0
    assert sorted(orjson.loads(l)["event"]["id"] for l in out.splitlines()) == sorted(d["event"]["id"] for d in confirmed)
    code, out = _cli("incidents", "--incidents-index", inc, "--es-url", es_url)
    assert code == 0 and f"{len(incidents)} incidents in {inc}" in out
    assert "rolebindings" in out and "a-3" in out


def test_search_unknown_hunt_is_a_configuration_error(capsys):
    assert main(["search", "no-such-hunt"]) == 2
    assert "unknown hunt 'no-such-hunt'" in capsys.readouterr().err
