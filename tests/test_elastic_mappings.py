"""Elastic-compatible fields on the real node: data_stream.* agree with the destination, event.ingested
is set at write time, typed keys inside requestObject / output_fields / user.extra behave as in
Elastic's integrations (exists, typed terms), every other key stays searchable in the flattened
copy, and an object that does not fit the typed keys is stored aside instead of rejected.
"""
from __future__ import annotations

import json

import pytest

import mappings
from mappings import elastic
from pipeline.setup import install_templates
from tests.conftest import shared
from tests.es_helpers import bulk_create
from transforms.ecs import Normaliser

N = Normaliser()


def test_generated_mapping_files_match_their_source():
    for rel, text in elastic.generated_files().items():
        assert mappings.path(*rel.split("/")).read_text() == text, f"{rel}: run `python -m mappings.elastic --write`"


def _pod(**over):
    base = json.loads(shared("audit", "falco-k8s-audit-traces", "create_nginx_pod_privileged.json")
                      .read_text().splitlines()[0])
    return {**base, **over}


@pytest.fixture
def stream(es, unique_name):
    install_templates(es)
    name = f"logs-kubernetes.audit_logs-e{unique_name}"
    yield name
    es.options(ignore_status=404).indices.delete_data_stream(name=name)


@pytest.mark.elasticsearch
def test_data_stream_fields_follow_the_destination_and_event_ingested_is_set(es, stream):
    doc = N.to_ecs("audit", _pod(auditID="ds-1"), "event")
    assert doc["data_stream"] == {"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "default"}
    assert bulk_create(es, stream, [doc]) == []
    src = es.search(index=stream)["hits"]["hits"][0]["_source"]
    namespace = stream.split("-", 2)[2]
    assert src["data_stream"] == {"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": namespace}
    assert src["event"]["ingested"] and src["kubehunt"]["timestamp"] == doc["@timestamp"]
    assert "flat" not in src["kubehunt"], "the flattened copies are indexed only"
    # constant_keyword: one value per backing index; a query on another value finds nothing.
    assert es.count(index=stream, query={"term": {"data_stream.namespace": namespace}})["count"] == 1
    assert es.count(index=stream, query={"term": {"data_stream.namespace": "default"}})["count"] == 0


@pytest.mark.elasticsearch
def test_typed_keys_behave_as_in_elastic_and_other_keys_stay_searchable(es, stream):
    spec = {"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}], "hostNetwork": True,
            "containers": [{"name": "c", "image": "evil/miner:1",
                            "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
            "nodeSelector": {"kubernetes.io/os": "linux"}}
    extra = {"authentication.kubernetes.io/pod-name": ["web-1"], "authentication.kubernetes.io/pod-uid": ["u"]}
    docs = [N.to_ecs("audit", _pod(auditID="t-1", requestObject={"kind": "Pod", "spec": spec},
                                   user={"username": "system:serviceaccount:ns:sa", "extra": extra}), "event"),
            N.to_ecs("audit", _pod(auditID="t-2", requestObject={"kind": "Pod", "spec": {"containers": []}}), "event")]
    assert bulk_create(es, stream, docs) == []

    def ids(query):
        return sorted(h["_id"] for h in es.search(index=stream, query=query)["hits"]["hits"])

    assert ids({"exists": {"field": "kubernetes.audit.requestObject.spec.volumes.hostPath"}}) == [docs[0]["event"]["id"]]
    assert ids({"exists": {"field": "kubernetes.audit.requestObject.spec.containers.securityContext.capabilities"}}) == \
        [docs[0]["event"]["id"]]
    assert ids({"term": {"kubernetes.audit.requestObject.spec.hostNetwork": True}}) == [docs[0]["event"]["id"]]
    assert ids({"term": {"kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name": "web-1"}}) == \
        [docs[0]["event"]["id"]]
    # Not typed (Elastic does not declare it): searchable in the flattened copy.
    assert ids({"term": {"kubehunt.flat.request_object.spec.nodeSelector.kubernetes.io/os": "linux"}}) == \
        [docs[0]["event"]["id"]]
    mapping = es.indices.get_mapping(index=stream)
    props = next(iter(mapping.values()))["mappings"]["properties"]["kubernetes"]["properties"]["audit"]["properties"]
    extra_props = props["user"]["properties"]["extra"]["properties"]
    assert extra_props["authentication.kubernetes.io/pod-name"]["type"] == "keyword"
    assert "nodeSelector" not in props["requestObject"]["properties"]["spec"]["properties"], "no mapping explosion"
    # EQL and ES|QL read the typed keys as values (a flattened field gives them nothing).
    eql = es.eql.search(index=stream, query='any where `kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name`'
                                             ' == "web-1" and kubernetes.audit.requestObject.spec.hostNetwork == true')
    assert [e["_id"] for e in eql["hits"]["events"]] == [docs[0]["event"]["id"]]
    esql = es.esql.query(query=f'FROM {stream} | WHERE `kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name`'
                               f' == "web-1" | STATS n = COUNT(*)')
    assert esql["values"] == [[1]]


@pytest.mark.elasticsearch
def test_an_object_that_does_not_fit_the_typed_keys_is_stored_aside_not_rejected(es, stream):
    odd = {"spec": {"hostNetwork": {"not": "a boolean"}, "volumes": "none"}}
    doc = N.to_ecs("audit", _pod(auditID="odd-1", requestObject=odd), "event")
    assert bulk_create(es, stream, [doc]) == []
    src = es.search(index=stream)["hits"]["hits"][0]["_source"]
    assert "requestObject" not in src["kubernetes"]["audit"]
    assert src["kubehunt"]["unfit"] == {"kubernetes_audit_requestObject": odd,
                                        "fields": ["kubernetes.audit.requestObject"]}
    assert es.count(index=stream, query={"term": {"kubehunt.flat.request_object.spec.volumes": "none"}})["count"] == 1
