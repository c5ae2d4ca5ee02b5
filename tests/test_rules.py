"""`kubehunt rules export`: each Elastic rule's Lucene query selects exactly the documents its hunt tags.

The oracle is kubehunt's own tagger. Documents are made by the pipeline's per-event path (parse -> ECS)
from every hunt's match and no_match examples plus a generated audit and Falco corpus, indexed into
unique data streams of the project's templates on the real Elasticsearch node; each rule's query runs
there as a `query_string` (the Lucene syntax Elastic Security's `language: lucene` rules run). Sigma
rules are parsed and converted by pySigma (the reference implementation).
"""
from __future__ import annotations

import json
import uuid

import orjson
import pytest
import yaml

from pipeline.rules import export
from transforms.ecs import Normaliser
from transforms.hunts import HuntSettings, load_catalogue, load_hunts
from transforms.parse import records

HUNTS = load_hunts()
# Hunts whose logic Lucene cannot express faithfully (Python regular expressions): reported, not exported.
NOT_IN_LUCENE = {"anonymous-request-allowed", "sensitive-hostpath-mount"}
# Exported with a stated approximation: `privileged == True` also matches the string "true" (a boolean
# field coerces it, a flattened one keeps it as a keyword; an API server would refuse it, and the
# hunt's own no_match example has it).
APPROXIMATE = {"privileged-pod-create"}


def _elastic():
    text, skipped, _ = export("elastic", HuntSettings())
    return [json.loads(line) for line in text.splitlines()], dict(skipped)


def test_approximations_are_stated_for_exactly_the_boolean_hunts():
    _, _, approximate = export("elastic", HuntSettings())
    assert {h for h, _ in approximate} == APPROXIMATE
    assert all("'true'" in why for _, why in approximate)


def test_every_hunt_is_exported_or_reported_with_the_reason():
    rules, skipped = _elastic()
    assert set(skipped) == NOT_IN_LUCENE
    assert all("matches()" in why for why in skipped.values())
    assert sorted(r["rule_id"] for r in rules) == sorted(f"kubehunt-{h.id}" for h in HUNTS if h.id not in NOT_IN_LUCENE)


def test_elastic_rules_carry_the_hunts_logic_never_kubehuntss_tags_and_the_import_schema():
    rules, _ = _elastic()
    by_id = {h.id: h for h in HUNTS}
    for rule in rules:
        hunt = by_id[rule["rule_id"].removeprefix("kubehunt-")]
        assert "kubehunt.hunts" not in rule["query"] and "kubehunt" not in rule["query"]
        assert rule["type"] == "query" and rule["language"] == "lucene"
        assert {"rule_id", "name", "description", "risk_score", "severity", "query", "index"} <= set(rule)
        assert 0 <= rule["risk_score"] <= 100 and rule["severity"] == hunt.severity
        (threat,) = rule["threat"]
        assert threat["tactic"]["id"] == hunt.mitre.tactic_id
        technique = threat["technique"][0]
        assert hunt.mitre.technique_id in (technique["id"], *(s["id"] for s in technique.get("subtechnique", [])))
        assert rule["enabled"] is False and rule["index"][0].startswith(f"logs-{hunt.source}-")


@pytest.fixture(scope="module")
def streams(es):
    import tests.builders.corpus as gen
    from elasticsearch import helpers

    from pipeline.setup import install_templates

    install_templates(es)
    suffix = f"kr{uuid.uuid4().hex[:10]}"
    names = {"kubernetes.audit_logs": f"logs-kubernetes.audit_logs-{suffix}", "falco.alerts": f"logs-falco.alerts-{suffix}"}
    raw = [(h.raw_source, e) for h in HUNTS for kind in ("match", "no_match") for e in h.example_events(kind)]
    raw += [("audit", e) for e, _ in gen.generate(3000, 4242)]
    raw += [("falco", a) for a in gen.generate_falco(600, 4242)]
    normaliser, catalogue = Normaliser(), load_catalogue(HuntSettings())
    docs, tagged, string_true = {}, {}, set()
    for source, event in raw:
        for record, envelope in records(source, orjson.dumps(event)):
            doc = normaliser.to_ecs(source, record, envelope)
            docs[(doc["event"]["dataset"], doc["event"]["id"])] = doc
            if b'"privileged":"true"' in orjson.dumps(record):
                string_true.add(doc["event"]["id"])
            for hunt_id in catalogue.tag(doc):
                tagged.setdefault(hunt_id, set()).add(doc["event"]["id"])
    actions = [{"_op_type": "create", "_index": names[ds], "_id": doc_id, "_source": d}
               for (ds, doc_id), d in docs.items()]
    ok, errors = helpers.bulk(es, actions, refresh=True, raise_on_error=False)
    assert not errors, errors[:2]
    yield names, tagged, string_true
    for name in names.values():
        es.indices.delete_data_stream(name=name)


@pytest.mark.elasticsearch
@pytest.mark.parametrize("hunt", [h for h in HUNTS if h.id not in NOT_IN_LUCENE], ids=lambda h: h.id)
def test_elastic_rule_query_selects_exactly_the_documents_the_hunt_tags(hunt, es, streams):
    names, tagged, string_true = streams
    rules, _ = _elastic()
    rule = next(r for r in rules if r["rule_id"] == f"kubehunt-{hunt.id}")
    response = es.search(index=names[hunt.source], query={"query_string": {"query": rule["query"]}},
                         size=10_000, source=False)
    found = {h["_id"] for h in response["hits"]["hits"]}
    expected = tagged.get(hunt.id, set())
    assert expected, f"{hunt.id}: the documents include its match examples"
    if hunt.id in APPROXIMATE:
        assert found - expected and found - expected <= string_true and expected <= found
        return
    assert found == expected, (f"only the rule: {sorted(found - expected)[:5]}, "
                               f"only the hunt: {sorted(expected - found)[:5]}")


def test_each_sigma_rule_parses_and_converts_with_pysigma():
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.collection import SigmaCollection

    text, skipped, _ = export("sigma", HuntSettings())
    assert skipped == []
    documents = [d for d in yaml.safe_load_all(text)]
    assert sorted(d["title"] for d in documents) == sorted(h.title for h in HUNTS)
    backend = LuceneBackend()
    for document in documents:
        collection = SigmaCollection.from_yaml(yaml.safe_dump(document), collect_errors=True)
        (rule,) = collection.rules
        assert rule.errors == [], (document["title"], rule.errors)
        assert str(rule.id) == document["id"] and rule.level is not None
        queries = backend.convert(collection)
        assert len(queries) == 1 and queries[0], document["title"]
        assert "kubehunt.hunts" not in queries[0]


def test_rules_export_cli_reports_untranslated_hunts_on_stderr(tmp_path, capsys):
    from pipeline.cli import main
    out = tmp_path / "rules.ndjson"
    assert main(["rules", "export", "--format", "elastic", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    for hunt_id in NOT_IN_LUCENE:
        assert f"{hunt_id} not exported (elastic)" in err
    assert len(out.read_text().splitlines()) == len(HUNTS) - len(NOT_IN_LUCENE)
    assert main(["rules", "export", "--format", "elastic", "--strict", "--out", str(out)]) == 1


@pytest.mark.parametrize(("match", "reason"), [
    ("lower(user.name) == 'a'", "only field-to-constant comparisons"),
    ("user.name == user.target.name", "only field-to-constant comparisons"),
    ("event.risk_score > 'a'", "ordering on a non-number"),
    ("any(c.name == 'a' and c.image == 'b' for c in kubernetes.audit.requestObject.spec.containers)",
     "AND/NOT on one element of an object array"),
    ("any(c.name == 'a' for c in kubernetes.audit.requestObject.spec.containers if c.image == 'b')",
     "a filter on the element"),
])
def test_both_exporters_refuse_what_the_one_walk_cannot_express_with_the_same_reason(match, reason):
    from types import SimpleNamespace

    from transforms.hunts.lucene import translate
    from transforms.hunts.sigma import sigma_rule
    from transforms.hunts.translate import Untranslatable

    hunt = SimpleNamespace(match=match, file="h.yaml", source="kubernetes.audit_logs")
    with pytest.raises(Untranslatable, match=reason) as lucene:
        translate(match, {})
    with pytest.raises(Untranslatable, match=reason) as sigma:
        sigma_rule(hunt, {})
    assert str(lucene.value) == str(sigma.value)


def test_each_exporter_emits_the_same_conditions_in_its_own_syntax():
    from types import SimpleNamespace

    from transforms.hunts.lucene import translate
    from transforms.hunts.sigma import sigma_rule
    from transforms.hunts.translate import Untranslatable

    match = ("kubernetes.audit.verb in ('get', 'list') and not exists(user.name) "
             "or startswith(user.name, setting('names')) or event.risk_score >= 3")
    lists = {"names": ("ci", "ops")}
    assert translate(match, lists)[0] == (
        '((kubernetes.audit.verb:("get" OR "list") AND (*:* AND NOT _exists_:user.name))'
        " OR (user.name:ci* OR user.name:ops*) OR event.risk_score:>=3)")
    hunt = SimpleNamespace(match=match, file="h.yaml", source="kubernetes.audit_logs", title="t", id="t",
                           hypothesis="h", notes="", severity="low", fields=(),
                           mitre=SimpleNamespace(technique_id="T1609", tactic_name="Execution"))
    rule = sigma_rule(hunt, lists)
    assert rule["detection"] == {"sel1": {"kubernetes.audit.verb": ["get", "list"]}, "sel2": {"user.name|exists": True},
                                 "sel3": {"user.name|startswith": ["ci", "ops"]}, "sel4": {"event.risk_score|gte": 3},
                                 "condition": "((sel1 and not sel2) or sel3 or sel4)"}
    assert rule["logsource"] == {"product": "kubernetes", "service": "audit"}
    # What only Lucene cannot say: a regular expression.
    with pytest.raises(Untranslatable, match="`matches\\(\\)` has no faithful Lucene equivalent"):
        translate("matches(user.name, '^a')", {})
    assert sigma_rule(SimpleNamespace(**{**vars(hunt), "match": "matches(user.name, '^a')"}), {})["detection"] == {
        "sel1": {"user.name|re": "^a"}, "condition": "sel1"}
