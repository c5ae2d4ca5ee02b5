"""transforms/kql.py: KQL parsed and translated as Kibana does, and the evaluator agrees with the real
node on the constructs Elastic's rules use."""
from __future__ import annotations

import pytest

from tests.es_helpers import bulk_create
from transforms import kql


def test_unquoted_quoted_wildcard_and_exists_translate_like_kibana():
    assert kql.kql_to_dsl("verb:create") == {"match": {"verb": "create"}}
    assert kql.kql_to_dsl('verb:"create"') == {"match_phrase": {"verb": "create"}}
    assert kql.kql_to_dsl("source.ip:*") == {"exists": {"field": "source.ip"}}
    assert kql.kql_to_dsl(r"user.name:system\:node\:*") == \
        {"query_string": {"fields": ["user.name"], "query": r"system\:node\:*"}}
    # An escaped star is a literal star, not a wildcard.
    assert kql.kql_to_dsl(r'rules.verbs:\*') == {"match": {"rules.verbs": "*"}}


def test_boolean_structure_and_value_lists():
    dsl = kql.kql_to_dsl('a:1 and not (b:x or b:y) or c:(* and not "z")')
    assert dsl == {"bool": {"should": [
        {"bool": {"filter": [{"match": {"a": "1"}},
                             {"bool": {"must_not": [{"bool": {"should": [{"match": {"b": "x"}}, {"match": {"b": "y"}}],
                                                              "minimum_should_match": 1}}]}}]}},
        {"bool": {"filter": [{"exists": {"field": "c"}}, {"bool": {"must_not": [{"match_phrase": {"c": "z"}}]}}]}}],
        "minimum_should_match": 1}}
    # Keywords in any case, spaces around the colon (as in Elastic's rules).
    assert kql.parse("x :a AND NOT y : b") == kql.parse("x:a and not y:b")


def test_unsupported_syntax_is_refused_with_the_reason():
    with pytest.raises(kql.KqlError, match="range"):
        kql.parse("code >= 400")
    with pytest.raises(kql.KqlError, match="field-less"):
        kql.parse("just-a-term")


def test_evaluator_reads_dotted_keys_and_lists():
    doc = {"a": {"b.c": [{"d": "x1"}, {"d": "y"}]}, "flag": True}
    assert kql.evaluate(kql.parse("a.b.c.d:x*"), doc)
    assert kql.evaluate(kql.parse("flag:true and not a.b.c.d:z"), doc)
    assert not kql.evaluate(kql.parse("a.b.c.d:(x or z)"), doc)


QUERIES = ["verb:(get or list)", 'user.name:(system\\:serviceaccount\\:* and not "system:serviceaccount:a:b")',
           "userAgent:(* and not (*kubernetes/$Format))", "n:* and not tag:t*", 'tag:"t 1" or verb:watch']
DOCS = [{"verb": "get", "user": {"name": "system:serviceaccount:a:b"}, "userAgent": "kubectl/v1 kubernetes/$Format"},
        {"verb": "list", "user": {"name": "system:serviceaccount:x:y"}, "userAgent": "curl/8", "n": 1},
        {"verb": "watch", "tag": ["t 1", "u"], "n": 2}, {"verb": "create", "tag": "zz", "n": 3}]


@pytest.mark.elasticsearch
@pytest.mark.parametrize("query", QUERIES)
def test_translation_and_evaluator_agree_on_the_real_node(es, unique_name, query):
    index = f"h6-{unique_name}-kql"
    es.indices.create(index=index, mappings={"dynamic_templates": [{"s": {"match_mapping_type": "string",
                                                                          "mapping": {"type": "keyword"}}}]})
    try:
        docs = [{**d, "event": {"id": str(i)}} for i, d in enumerate(DOCS)]
        assert bulk_create(es, index, docs) == []
        hits = es.search(index=index, query=kql.kql_to_dsl(query))["hits"]["hits"]
        assert sorted(h["_id"] for h in hits) == [d["event"]["id"] for d in docs if kql.evaluate(kql.parse(query), d)]
    finally:
        es.indices.delete(index=index)
