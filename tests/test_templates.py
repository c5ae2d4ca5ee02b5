"""Index templates (mappings/templates) on the real Elasticsearch: every real sample is stored with zero
rejections, ECS types are what ECS says, arbitrary objects cannot conflict, nanoseconds are queryable.

Each test indexes into its own data streams `logs-kubernetes.audit_logs-t<unique>` /
`logs-falco.alerts-t<unique>` (matched by our index templates), with `op_type=create` like the sink,
and deletes them afterwards.
"""
from __future__ import annotations

import json

import pytest

import mappings
from tests.conftest import shared
from tests.es_helpers import bulk_create
from tests.helpers import normalise_lines
from transforms.ecs import Normaliser

pytestmark = pytest.mark.elasticsearch

N = Normaliser()


def sample_lines(source: str) -> list[bytes]:
    out = []
    for path in sorted(shared(source).rglob("*")):
        if path.is_file():
            out += [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    return out


# ---------------------------------------------------------------------------------------------


def test_every_real_sample_is_stored_or_dead_lettered_with_a_reason(es, streams):
    for source in ("audit", "falco"):
        docs, dead = normalise_lines(source, sample_lines(source))
        assert bulk_create(es, streams[source], docs) == []
        stored = es.count(index=streams[source])["count"]
        assert stored == len({d["event"]["id"] for d in docs}), "one document per distinct event"
        for line, stage, reason in dead:
            assert reason and "Traceback" not in reason
        if source == "audit":
            assert [r for _, _, r in dead] == ["JSON object with kind=0 is not an audit Event"]
            # 123 native events + 2 AKS + 1 GKE; 3 PSP traces duplicate k8s traces and Elastic's sample
            # repeats one line byte for byte: the ids dedupe exactly those.
            assert (len(docs), stored) == (126, 122)
        else:
            assert dead == [] and (len(docs), stored) == (22, 20)


def test_data_streams_resolve_to_our_templates_with_ecs_types(es, streams):
    for source, stream in streams.items():
        sim = es.indices.simulate_index_template(name=stream)
        props = sim["template"]["mappings"]["properties"]
        # Elastic's type for @timestamp; the exact (ns) time is kubehunt.timestamp.
        assert props["@timestamp"]["type"] == "date"
        assert props["kubehunt"]["properties"]["timestamp"]["type"] == "date_nanos"
        for name in ("type", "dataset", "namespace"):
            assert props["data_stream"]["properties"][name]["type"] == "constant_keyword"
        assert props["event"]["properties"]["original"] == {"type": "keyword", "index": False, "doc_values": False}
        assert sim["template"]["settings"]["index"]["final_pipeline"] == "kubehunt-events"
        assert props["source"]["properties"]["ip"]["type"] == "ip"
        assert props["event"]["properties"]["severity"]["type"] == "long"
        assert props["process"]["properties"]["command_line"]["type"] == "wildcard"
        assert props["user"]["properties"]["name"]["type"] == "keyword"
        original = props["kubernetes"]["properties"]["audit"] if source == "audit" else props["falco"]
        assert original["dynamic"] in (False, "false")


def test_templates_on_disk_are_valid_json_and_named_for_kubehunt():
    for kind in ("component", "index"):
        for path in mappings.path("templates", kind).glob("kubehunt-*.json"):
            json.loads(path.read_text())
    index = json.loads(mappings.path("templates", "index", "kubehunt-kubernetes.audit_logs.json").read_text())
    assert index["index_patterns"] == ["logs-kubernetes.audit_logs-*"] and "data_stream" in index
    assert index["priority"] > 200, "must win over Elastic's integration template (200) and logs (100)"


def test_same_request_object_key_as_object_string_number_and_list_is_stored(es, streams):
    base = json.loads(shared("audit", "falco-k8s-audit-traces", "create_nginx_pod_privileged.json")
                      .read_text().splitlines()[0])
    shapes = [{"spec": {"x": {"a": 1}}}, {"spec": {"x": "text"}}, {"spec": {"x": 7}}, {"spec": {"x": [1, "a", {"b": None}]}},
              {"spec": "flat"}, {"spec": [[{"deep": [[1]]}]]}, {"a.b": 1, "a": {"b": {"c": 2}}}, {"": {" ": "x" * 40000}}]
    docs = [N.to_ecs("audit", {**base, "auditID": f"shape-{i}", "requestObject": shape}, "event")
            for i, shape in enumerate(shapes)]
    assert bulk_create(es, streams["audit"], docs) == []
    assert es.count(index=streams["audit"])["count"] == len(shapes)


def test_hunt_fields_are_searchable(es, streams):
    for source in ("audit", "falco"):
        docs, _ = normalise_lines(source, sample_lines(source))
        assert bulk_create(es, streams[source], docs) == []

    def count(stream, query):
        return es.count(index=stream, query=query)["count"]

    audit, falco = streams["audit"], streams["falco"]
    # Oracles: the same predicates evaluated on the Python documents.
    docs, _ = normalise_lines("audit", sample_lines("audit"))
    unique = {d["event"]["id"]: d for d in docs}.values()
    host_network = sum(1 for d in unique if (d["kubernetes"]["audit"].get("requestObject") or {}).get("spec", {})
                       .get("hostNetwork") is True)
    assert host_network > 0
    assert count(audit, {"term": {"kubernetes.audit.requestObject.spec.hostNetwork": "true"}}) == host_network
    privileged = sum(1 for d in unique if any(
        (c.get("securityContext") or {}).get("privileged") is True
        for c in ((d["kubernetes"]["audit"].get("requestObject") or {}).get("spec") or {}).get("containers") or []))
    assert privileged > 0
    assert count(audit, {"term": {"kubernetes.audit.requestObject.spec.containers.securityContext.privileged":
                                  "true"}}) == privileged
    allow = sum(1 for d in unique if (d["kubernetes"]["audit"].get("annotations") or {})
                .get("authorization.k8s.io/decision") == "allow")
    assert count(audit, {"term": {"kubernetes.audit.annotations.authorization_k8s_io/decision": "allow"}}) == allow
    assert count(audit, {"term": {"kubernetes.audit.annotations.authorization.k8s.io/decision": "allow"}}) == allow
    impersonated = sum(1 for d in unique if "effective" in d.get("user", {}))
    assert impersonated > 0
    assert count(audit, {"exists": {"field": "user.effective.name"}}) == impersonated
    execs = [d for d in unique if d.get("orchestrator", {}).get("resource", {}).get("subresource") == "exec"]
    assert count(audit, {"term": {"orchestrator.resource.subresource": "exec"}}) == len(execs) > 0
    assert count(audit, {"wildcard": {"process.command_line": "*bash*"}}) == \
        sum(1 for d in unique if "bash" in d.get("process", {}).get("command_line", ""))
    assert count(audit, {"range": {"http.response.status_code": {"gte": 400}}}) == \
        sum(1 for d in unique if d.get("http", {}).get("response", {}).get("status_code", 0) >= 400) > 0
    fdocs, _ = normalise_lines("falco", sample_lines("falco"))
    funique = {d["event"]["id"]: d for d in fdocs}.values()
    # Typed keys are fields of their own; the flattened copy has every key as an exact keyword.
    assert count(falco, {"term": {"falco.output_fields.proc.name": "event-generator"}}) == \
        sum(1 for d in funique if d["falco"]["output_fields"].get("proc.name") == "event-generator") > 0
    assert count(falco, {"term": {"kubehunt.flat.output_fields.proc.name": "event-generator"}}) == \
        sum(1 for d in funique if d["falco"]["output_fields"].get("proc.name") == "event-generator") > 0
    assert count(falco, {"term": {"threat.technique.id": "T1555"}}) == \
        sum(1 for d in funique if "T1555" in d.get("threat", {}).get("technique", {}).get("id", [])) > 0
    assert count(falco, {"term": {"event.severity": 99}}) == \
        sum(1 for d in funique if d["event"].get("severity") == 99) > 0


def test_nanoseconds_are_queryable(es, streams):
    base = {"rule": "R", "output": "o", "priority": "Warning", "output_fields": {"proc.name": "sh"}}
    docs = [N.to_ecs("falco", {**base, "uuid": f"ns-{i}", "output_fields": {"evt.time": 1715108059341081180 + i}},
                     "json") for i in range(3)]
    assert bulk_create(es, streams["falco"], docs) == []
    hits = es.search(index=streams["falco"], query={"range": {"kubehunt.timestamp": {
        "gt": "2024-05-07T18:54:19.341081180Z", "lte": "2024-05-07T18:54:19.341081182Z"}}},
        sort=[{"kubehunt.timestamp": "asc"}])["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["ns-1", "ns-2"]


def test_over_long_values_are_stored_not_rejected(es, streams):
    """Lucene refuses terms over 32 KB: keyword fields carry ignore_above, wildcard/text fields cope."""
    base = json.loads(shared("audit", "falco-k8s-audit-traces", "exec_pod.json").read_text().splitlines()[0])
    long = "x" * 100_000
    record = {**base, "auditID": "long-1", "requestURI": f"/api/v1/namespaces/default/pods/p/exec?command={long}",
              "userAgent": long, "user": {"username": long, "groups": [long]}, "verb": long,
              "requestObject": {"spec": {"image": long}}}
    alert = {"rule": long, "output": long, "priority": "Warning", "uuid": "long-2", "time": "2024-05-07T18:54:19Z",
             "tags": [long], "output_fields": {"proc.cmdline": long, "proc.name": long, "fd.name": "/" + long}}
    assert bulk_create(es, streams["audit"], [N.to_ecs("audit", record, "event")]) == []
    assert bulk_create(es, streams["falco"], [N.to_ecs("falco", alert, "json")]) == []
    assert es.count(index=streams["audit"], query={"wildcard": {"process.command_line": "xxx*"}})["count"] == 1
