"""`transforms.ecs`: the declarative mapping, the audit and Falco fields hunts need, ids, times, errors."""
from __future__ import annotations

import copy
import json

import orjson
import pytest
import yaml

import mappings
from transforms.hunts import TAGGED_FIELDS
from scripts.gen_templates import ecs_component_template, render_template
from transforms.ecs import (DROPPED, EcsMapping, MappingError, NormaliseError, Normaliser, compile_mapping,
                            ecs_field_types, event_id, load_mapping, parse_time, to_epoch_ms)
from transforms.parse import Envelope, records

N = Normaliser()

EVENT = {
    "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "a-1",
    "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/shop/pods", "verb": "create",
    "user": {"username": "system:serviceaccount:shop:web", "uid": "u-1",
             "groups": ["system:serviceaccounts", "system:authenticated"]},
    "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.30.0",
    "objectRef": {"resource": "pods", "namespace": "shop", "apiVersion": "v1"},
    "responseStatus": {"metadata": {}, "code": 201},
    "requestObject": {"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
    "responseObject": {"metadata": {"name": "web-x7k2p", "generateName": "web-"}},
    "requestReceivedTimestamp": "2024-01-02T03:04:05.123456Z", "stageTimestamp": "2024-01-02T03:04:05.200001Z",
    "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"},
}


def audit(**changes) -> dict:
    ev = copy.deepcopy(EVENT)
    ev.update(changes)
    return {k: v for k, v in ev.items() if v is not None}


def ecs(record, envelope="event"):
    return N.to_ecs("audit", record, envelope)


# ---------------------------------------------------------------------------------------------
# Audit: contract fields


def test_audit_contract_fields():
    doc = ecs(audit())
    assert doc["@timestamp"] == "2024-01-02T03:04:05.123456Z"
    assert doc["event"]["dataset"] == "kubernetes.audit_logs" and doc["event"]["kind"] == "event"
    assert doc["event"]["id"].startswith("a-1-ResponseComplete-")
    assert doc["user"]["name"] == "system:serviceaccount:shop:web"
    assert doc["orchestrator"] == {"type": "kubernetes", "api_version": "audit.k8s.io/v1", "namespace": "shop",
                                   "resource": {"type": "pods", "name": "web-x7k2p"}}
    assert doc["source"]["ip"] == ["10.0.0.7"]
    assert doc["kubernetes"]["audit"]["requestObject"] == EVENT["requestObject"]


def test_generate_name_pod_takes_its_name_from_the_response():
    assert ecs(audit())["orchestrator"]["resource"]["name"] == "web-x7k2p"
    named = audit(objectRef={"resource": "pods", "namespace": "shop", "name": "given"})
    assert ecs(named)["orchestrator"]["resource"]["name"] == "given"


def test_created_outcome_status_groups_and_types():
    doc = ecs(audit())
    assert doc["event"]["created"] == "2024-01-02T03:04:05.200001Z"
    assert doc["event"]["outcome"] == "success"
    assert doc["http"]["response"]["status_code"] == 201
    assert doc["user"]["group"]["name"] == ["system:serviceaccounts", "system:authenticated"]
    assert doc["event"]["category"] == ["api", "configuration"]
    assert doc["event"]["type"] == ["creation", "allowed"]
    assert doc["container"]["image"]["name"] == ["nginx:1"]


@pytest.mark.parametrize(("resource", "verb", "category", "types"), [
    ("clusterrolebindings", "create", ["api", "iam"], ["creation", "allowed"]),
    ("roles", "patch", ["api", "iam"], ["change", "allowed"]),
    ("secrets", "get", ["api", "configuration"], ["access", "allowed"]),
    ("tokenreviews", "create", ["api", "authentication"], ["creation", "allowed"]),
    ("leases", "update", ["api"], ["change", "allowed"]),
])
def test_category_and_type_follow_resource_and_verb(resource, verb, category, types):
    doc = ecs(audit(verb=verb, objectRef={"resource": resource, "name": "x"}))
    assert (doc["event"]["category"], doc["event"]["type"]) == (category, types)


def test_admission_refusal_of_an_authorised_request_is_a_failure():
    doc = ecs(audit(responseStatus={"code": 403, "status": "Failure"}))
    assert doc["event"]["outcome"] == "failure" and doc["event"]["type"][-1] == "allowed"


def test_outcome_without_a_code_follows_the_decision_like_elastic():
    forbid = audit(responseStatus=None, stage="RequestReceived",
                   annotations={"authorization.k8s.io/decision": "forbid"})
    assert ecs(forbid)["event"]["outcome"] == "failure"
    assert "outcome" not in ecs(audit(responseStatus=None, annotations=None))["event"]


@pytest.mark.parametrize("stage", ["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"])
def test_every_stage_normalises_and_gets_its_own_id(stage):
    doc = ecs(audit(stage=stage))
    assert doc["kubernetes"]["audit"]["stage"] == stage
    assert f"-{stage}-" in doc["event"]["id"]


def test_legacy_timestamp_when_request_received_is_absent():
    doc = ecs(audit(requestReceivedTimestamp=None, timestamp="2017-09-11T19:55:05Z", apiVersion="audit.k8s.io/v1beta1"))
    assert doc["@timestamp"] == "2017-09-11T19:55:05Z"


def test_event_without_any_time_is_refused_naming_the_fields_looked_at():
    with pytest.raises(NormaliseError, match="no usable event time: none of requestReceivedTimestamp, "
                                             "timestamp, stageTimestamp is set"):
        ecs(audit(requestReceivedTimestamp=None, stageTimestamp=None))


def test_unusable_event_time_reason_names_the_field_and_its_value_truncated():
    with pytest.raises(NormaliseError) as err:
        ecs(audit(requestReceivedTimestamp="yesterday", stageTimestamp="x" * 5000))
    reason = str(err.value)
    assert "no usable event time" in reason and "requestReceivedTimestamp='yesterday'" in reason
    assert "stageTimestamp='xxx" in reason and len(reason) < 400


def test_unusable_falco_time_reason_names_the_output_field():
    alert = {**ALERT, "time": "noon", "output_fields": {"evt.time": "later"}}
    with pytest.raises(NormaliseError, match=r"no usable event time: looked at output_fields.evt.time.iso8601, "
                                             r"output_fields.evt.time, output_fields.evt_time, time; .*"
                                             r"output_fields.evt.time='later', time='noon'"):
        N.to_ecs("falco", alert, "json")


def test_event_time_before_1970_is_refused_because_timestamps_are_nanosecond_dates():
    with pytest.raises(NormaliseError, match="outside 1970..2261"):
        ecs(audit(requestReceivedTimestamp="1969-12-31T23:59:59Z"))


# ---------------------------------------------------------------------------------------------
# Audit: impersonation, pod claims, exec


def test_impersonation_sets_effective_user_and_related():
    doc = ecs(audit(user={"username": "system:admin"},
                    impersonatedUser={"username": "bob", "uid": "b-1", "groups": ["system:authenticated"]}))
    assert doc["user"]["name"] == "system:admin"
    assert doc["user"]["effective"] == {"name": "bob", "id": "b-1", "group": {"name": ["system:authenticated"]}}
    assert doc["related"]["user"] == ["system:admin", "b-1", "bob"]


def test_bound_token_pod_claims_are_queryable_and_kept():
    extra = {"authentication.kubernetes.io/pod-name": ["web-5d8f"], "authentication.kubernetes.io/pod-uid": ["p-9"],
             "authentication.kubernetes.io/node-name": ["node-1"],
             "authentication.kubernetes.io/credential-id": ["JTI=abc"]}
    doc = ecs(audit(user={"username": "system:serviceaccount:shop:web", "extra": extra}))
    assert doc["kubehunt"]["caller"] == {"pod": {"name": "web-5d8f", "uid": "p-9"}, "node": {"name": "node-1"},
                                         "credential_id": "JTI=abc",
                                         "service_account": {"namespace": "shop", "name": "web"}}
    assert doc["kubernetes"]["audit"]["user"]["extra"] == extra


def test_look_alike_username_is_not_a_service_account():
    doc = ecs(audit(user={"username": "system:serviceaccounts:default:default"}))
    assert "caller" not in doc.get("kubehunt", {})


def test_exec_command_is_url_decoded_from_the_request_uri():
    uri = ("/api/v1/namespaces/shop/pods/web-1/exec?command=sh&command=-c&command=cat%20%2Fetc%2Fshadow"
           "&container=app&stdin=true&stdout=true&tty=true")
    doc = ecs(audit(verb="create", requestURI=uri,
                    objectRef={"resource": "pods", "namespace": "shop", "name": "web-1", "subresource": "exec"}))
    assert doc["process"]["args"] == ["sh", "-c", "cat /etc/shadow"]
    assert doc["process"]["command_line"] == 'sh -c "cat /etc/shadow"'
    assert doc["process"]["name"] == "sh"
    assert doc["container"]["name"] == "app"
    assert doc["orchestrator"]["resource"]["subresource"] == "exec"
    assert doc["event"]["category"] == ["api", "process"] and doc["event"]["type"][0] == "start"


def test_websocket_exec_recorded_as_get_is_also_a_process_start():
    uri = "/api/v1/namespaces/shop/pods/web-1/exec?command=%2Fbin%2Fbash&stdin=true"
    doc = ecs(audit(verb="get", requestURI=uri, objectRef={"resource": "pods", "name": "web-1", "subresource": "exec"}))
    assert doc["process"]["command_line"] == "/bin/bash" and doc["process"]["name"] == "bash"
    assert doc["event"]["type"][0] == "start"


def test_real_attach_and_exec_samples_give_commands():
    doc = ecs(json.loads(_sample("audit/falco-k8s-audit-traces/exec_pod.json")))
    assert doc["process"]["command_line"] == "bash"


def _sample(rel):
    from tests.conftest import shared
    return shared(*rel.split("/")).read_text().splitlines()[0]


# ---------------------------------------------------------------------------------------------
# Audit: the original is kept


def test_original_record_is_kept_exactly_and_not_mutated():
    record = audit()
    before = copy.deepcopy(record)
    doc = ecs(record)
    assert record == before
    assert doc["kubernetes"]["audit"] == before


def test_same_event_in_an_eventlist_an_aks_wrapper_or_alone_gets_one_id():
    record = audit()
    ids = {ecs(r, e)["event"]["id"] for raw in (
        orjson.dumps(record),
        orjson.dumps({"kind": "EventList", "items": [record]}),
        orjson.dumps({"category": "kube-audit", "properties": {"log": json.dumps(record)}}),
    ) for r, e in records("audit", raw)}
    assert len(ids) == 1


def test_reused_audit_id_and_stage_with_different_content_get_different_ids():
    assert event_id("audit", audit()) != event_id("audit", audit(verb="get"))


def test_over_long_audit_id_is_digested_to_keep_ids_under_es_limit():
    ident = event_id("audit", audit(auditID="x" * 5000))
    assert len(ident.encode()) < 200


def test_aks_metadata_like_elastic():
    doc = ecs(audit(), Envelope("aks", {"category": "kube-audit", "pod": "kube-apiserver-1"}))
    assert doc["kubernetes"]["audit"]["aks_metadata"] == {"category": "kube-audit", "pod": "kube-apiserver-1"}


# ---------------------------------------------------------------------------------------------
# GKE


GKE = {
    "protoPayload": {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": "system:serviceaccount:shop:web"},
        "methodName": "io.k8s.core.v1.pods.exec.create",
        "requestMetadata": {"callerIp": "10.0.0.9", "callerSuppliedUserAgent": "kubectl/v1.30"},
        "resourceName": "core/v1/namespaces/shop/pods/web-1/exec",
        "serviceName": "k8s.io", "status": {"code": 7, "message": "forbidden"},
    },
    "insertId": "ins-1", "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "prod", "project_id": "p1"}},
    "timestamp": "2025-07-13T08:38:39.127266Z", "receiveTimestamp": "2025-07-13T08:38:41.005864307Z",
    "labels": {"authorization.k8s.io/decision": "forbid"},
}


def test_gke_record_gets_the_event_fields_hunts_read():
    doc = N.to_ecs("audit", copy.deepcopy(GKE), "gke")
    ka = doc["kubernetes"]["audit"]
    assert ka["verb"] == "create"
    assert ka["objectRef"] == {"apiGroup": "", "apiVersion": "v1", "namespace": "shop", "resource": "pods",
                               "name": "web-1", "subresource": "exec"}
    assert ka["user"]["username"] == "system:serviceaccount:shop:web"
    assert ka["protoPayload"] == GKE["protoPayload"] and ka["receiveTimestamp"] == GKE["receiveTimestamp"]
    assert doc["@timestamp"] == GKE["timestamp"]
    assert doc["http"]["response"]["status_code"] == 403 and doc["event"]["outcome"] == "failure"
    assert doc["orchestrator"]["cluster"] == {"name": "prod", "id": "p1"}
    assert doc["orchestrator"]["resource"] == {"type": "pods", "name": "web-1", "subresource": "exec"}
    assert doc["event"]["id"].startswith("ins-1-")


def test_gke_cluster_scoped_resource():
    gke = copy.deepcopy(GKE)
    gke["protoPayload"]["resourceName"] = "rbac.authorization.k8s.io/v1/clusterrolebindings/admin-all"
    gke["protoPayload"]["methodName"] = "io.k8s.authorization.rbac.v1.clusterrolebindings.create"
    ref = N.to_ecs("audit", gke, "gke")["kubernetes"]["audit"]["objectRef"]
    assert ref == {"apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1", "resource": "clusterrolebindings",
                   "name": "admin-all"}


# ---------------------------------------------------------------------------------------------
# Type safety: what Elasticsearch would reject never reaches it


def test_typed_field_holding_an_object_is_refused_with_the_field():
    with pytest.raises(NormaliseError, match=r"kubernetes.audit.verb is an object"):
        ecs(audit(verb={"x": 1}))


def test_object_field_holding_text_is_refused_with_the_field():
    with pytest.raises(NormaliseError, match=r"kubernetes.audit.objectRef is a str"):
        ecs(audit(objectRef="pods"))


def test_unstorable_field_name_is_refused():
    with pytest.raises(NormaliseError, match="cannot store"):
        ecs(audit(**{"": 1}))


def test_requestobject_of_any_shape_is_accepted():
    for obj in ({"spec": "text"}, {"spec": [1, {"a": []}]}, {"": {"...": None}}):
        assert ecs(audit(requestObject=obj))["kubernetes"]["audit"]["requestObject"] == obj


def test_unstorable_ecs_value_is_dropped_and_named():
    falco = {"rule": "R", "output": "o", "time": "2024-05-07T18:54:19Z", "priority": "Warning",
             "output_fields": {"proc.name": {"nested": 1}, "container.privileged": "yes", "proc.pid": "12"}}
    doc = N.to_ecs("falco", falco, "json")
    assert "name" not in doc["process"] and doc["process"]["pid"] == 12
    assert doc["kubehunt"]["normalise"]["dropped"] == ["process.name", "container.security_context.privileged"]
    assert doc["falco"]["output_fields"]["proc.name"] == {"nested": 1}


# ---------------------------------------------------------------------------------------------
# Falco

ALERT = {
    "hostname": "node-1", "output": "18:54:19.341081180: Notice shell", "priority": "Notice",
    "rule": "Terminal shell in container", "source": "syscall", "time": "2024-05-07T18:54:19.341081999Z",
    "tags": ["T1059.004", "container", "mitre_execution", "mitre_command_and_control", "TA0011"],
    "uuid": "7466e462-ddde-434d-8dee-390ca5656f83",
    "output_fields": {"evt.time": 1715108059341081180, "evt.type": "execve", "proc.name": "sh", "proc.pid": "4242",
                      "proc.aname[2]": "containerd-shim", "proc.aname[3]": None, "k8s.ns.name": "shop",
                      "k8s.pod.name": "web-1", "container.id": "8645a7a530c3", "user.uid": 0, "user.name": "root",
                      "k8s.pod.labels": ["app:web"], "fd.name": "/etc/shadow", "evt_time": 1715108059341081180},
}


def test_falco_contract_fields():
    doc = N.to_ecs("falco", copy.deepcopy(ALERT), "json")
    assert doc["@timestamp"] == "2024-05-07T18:54:19.341081180Z"
    assert doc["event"]["id"] == ALERT["uuid"] and doc["event"]["dataset"] == "falco.alerts"
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 47
    assert doc["rule"]["name"] == "Terminal shell in container"
    assert doc["process"]["name"] == "sh" and doc["process"]["pid"] == 4242
    assert doc["orchestrator"] == {"type": "kubernetes", "namespace": "shop",
                                   "resource": {"type": "pod", "name": "web-1", "label": ["app:web"]}}
    assert doc["container"]["id"] == "8645a7a530c3"
    assert doc["falco"]["output_fields"] == ALERT["output_fields"]
    assert doc["observer"]["hostname"] == "node-1"
    assert doc["kubehunt"]["time_ns"] == 1715108059341081180


def test_falco_threat_fields_from_tags():
    threat = N.to_ecs("falco", copy.deepcopy(ALERT), "json")["threat"]
    assert threat["technique"] == {"id": ["T1059"], "subtechnique": {"id": ["T1059.004"]}}
    assert threat["tactic"] == {"name": ["Execution", "Command and Control"], "id": ["TA0002", "TA0011"]}
    assert threat["framework"] == "MITRE ATT&CK"


@pytest.mark.parametrize(("priority", "severity"), [
    ("Emergency", 99), ("Alert", 99), ("Critical", 99), ("Error", 73), ("Warning", 47), ("Notice", 47),
    ("Informational", 21), ("Debug", 21), ("WARNING", 47), ("informational", 21),
])
def test_falco_severity_like_elastic(priority, severity):
    doc = N.to_ecs("falco", {**ALERT, "priority": priority}, "json")
    assert doc["event"]["severity"] == severity and doc["log"]["level"] == priority.lower()


@pytest.mark.parametrize(("fields", "expected"), [
    ({"evt.time.iso8601": 1715108059341081180}, "2024-05-07T18:54:19.341081180Z"),
    ({"evt.time.iso8601": "2024-05-07T18:54:19.341081180Z"}, "2024-05-07T18:54:19.341081180Z"),
    ({"evt.time.iso8601": "2024-05-07T20:54:19.341081180+0200"}, "2024-05-07T18:54:19.341081180Z"),
    ({"evt.time": "1715108059341081180"}, "2024-05-07T18:54:19.341081180Z"),
    ({"evt_time": 1764940352137915184}, "2025-12-05T13:12:32.137915184Z"),
    ({}, "2024-05-07T18:54:19.341081999Z"),
])
def test_falco_time_from_the_event_in_every_encoding(fields, expected):
    doc = N.to_ecs("falco", {**ALERT, "output_fields": fields}, "json")
    assert doc["@timestamp"] == expected


def test_falco_without_output_fields_still_normalises():
    doc = N.to_ecs("falco", {k: v for k, v in ALERT.items() if k != "output_fields"}, "json")
    assert doc["rule"]["name"] == ALERT["rule"] and "process" not in doc


def test_falco_without_uuid_gets_a_content_id():
    alert = {k: v for k, v in ALERT.items() if k != "uuid"}
    assert event_id("falco", alert).startswith("falco-")
    assert event_id("falco", alert) == event_id("falco", copy.deepcopy(alert))


# ---------------------------------------------------------------------------------------------
# Mapping language


def _write(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_mapping_errors_name_file_and_line(tmp_path):
    path = _write(tmp_path, "dataset: d\noriginal: o\nfields:\n  a.b: x\n  c.d: =nope\n")
    with pytest.raises(MappingError, match=r"m.yaml:5: c.d: unknown function 'nope'"):
        compile_mapping(EcsMapping.load(path))
    path = _write(tmp_path, "dataset: d\noriginal: o\nfields:\n  a.b: x | frob\n")
    with pytest.raises(MappingError, match=r"m.yaml:4: a.b: unknown filter 'frob'"):
        compile_mapping(EcsMapping.load(path))
    path = _write(tmp_path, "dataset: d\noriginal: o\nfields:\n  a.b: x\n  a.b: y\n")
    with pytest.raises(MappingError, match=r"m.yaml:5: a.b is mapped twice"):
        EcsMapping.load(path)
    path = _write(tmp_path, "dataset: d\noriginal: o\nfields:\n  a: x\n  a.b: y\n")
    with pytest.raises(MappingError, match=r"m.yaml:5: a.b: a is both a field and an object"):
        compile_mapping(EcsMapping.load(path))
    path = _write(tmp_path, "dataset: d\noriginal: o\nfields:\n  a: x | table:nope\n")
    with pytest.raises(MappingError, match=r"m.yaml:4: a: unknown table 'nope'"):
        compile_mapping(EcsMapping.load(path))


def test_mapping_language_sources_filters_tables(tmp_path):
    path = _write(tmp_path, """dataset: d
original: o
fields:
  a.first: missing ?? b.c
  a.const: "'k'"
  a.num: n | long
  a.ip: ips | ip
  a.lookup: level | table:levels
  a.default: nothing ?? '*' | table:levels
  a.words: text | split
tables:
  levels: {"*": none, high: [critical, error], low: [info]}
""")
    m = compile_mapping(EcsMapping.load(path))
    out = m.apply({"b": {"c": "x"}, "n": "42", "ips": ["10.0.0.1", "nope", "::1"], "level": "Error",
                   "text": "a  b c"})
    assert out == {"a": {"first": "x", "const": "k", "num": 42, "ip": ["10.0.0.1", "::1"], "lookup": "high",
                         "default": "none", "words": ["a", "b", "c"]}}
    assert m.apply({"n": {"x": 1}}) == {"a": {"const": "k", "default": "none"},
                                        "kubehunt": {"normalise": {"dropped": ["a.num"]}}}


def test_every_mapped_field_has_an_es_type():
    types = ecs_field_types()
    for source in ("audit", "falco"):
        for target, _ in load_mapping(source).rules:
            assert target in types, f"{target} ({source}) has no type in mappings/ecs/ecs-fields.yaml"


def test_ecs_component_template_is_generated_from_ecs_fields():
    committed = mappings.path("templates", "component", "kubehunt-ecs.json").read_text()
    assert committed == render_template(ecs_component_template()), \
        "regenerate with: python scripts/gen_templates.py"


def test_ecs_fields_file_has_no_stale_entries():
    emitted = {t for s in ("audit", "falco") for t, _ in load_mapping(s).rules}
    emitted |= {"event.id", "event.dataset", "kubehunt.normalise.dropped"}
    emitted |= set(TAGGED_FIELDS)  # written by the hunt tagger after normalisation
    assert set(ecs_field_types()) == emitted


# ---------------------------------------------------------------------------------------------
# Time helpers


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
    ("2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05.123456789Z"),
    ("2024-01-02T05:04:05.5+02:00", "2024-01-02T03:04:05.5Z"),
    ("2024-01-02 03:04:05", "2024-01-02T03:04:05Z"),
    (1704164645, "2024-01-02T03:04:05Z"),
    (1704164645123, "2024-01-02T03:04:05.123Z"),
    (1704164645123456, "2024-01-02T03:04:05.123456Z"),
    (1704164645123456789, "2024-01-02T03:04:05.123456789Z"),
    ("2024-13-02T03:04:05Z", None), ("yesterday", None), (True, None), ("", None), (None, None),
])
def test_parse_time(value, expected):
    assert parse_time(value) == expected


def test_to_epoch_ms_matches_datetime():
    assert to_epoch_ms("2024-01-02T03:04:05.123456Z") == 1704164645123
    assert to_epoch_ms("2024-01-02T03:04:05Z") == 1704164645000


def test_dropped_sentinel_never_reaches_a_document():
    doc = ecs(audit(responseObject={"metadata": {"name": {"x": 1}}}))
    assert DROPPED not in [v for v in doc.values()]
    assert doc["kubehunt"]["normalise"]["dropped"] == ["orchestrator.resource.name"]
    assert "name" not in doc["orchestrator"]["resource"]
    assert yaml.safe_dump(doc)


def test_nul_in_a_flattened_key_is_refused_but_nul_in_a_value_is_kept():
    # Found by tests/test_ecs_property.py: Elasticsearch reserves \0 in flattened keys.
    with pytest.raises(NormaliseError, match=r"responseObject.a\['b\\x00'\] is a key with a NUL"):
        ecs(audit(responseObject={"a": [{"b\x00": 1}]}))
    assert ecs(audit(responseObject={"a": "x\x00y"}))["kubernetes"]["audit"]["responseObject"] == {"a": "x\x00y"}
    with pytest.raises(NormaliseError, match="a key with a NUL"):
        N.to_ecs("falco", {**ALERT, "output_fields": {"proc.name\x00": "sh"}}, "json")


# ---------------------------------------------------------------------------------------------
# Deep input (issue 13): a dead letter or a document, never a crash


def _nested(depth: int, leaf=1) -> dict:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def test_300_deep_request_object_is_a_clean_normalise_error():
    with pytest.raises(NormaliseError, match="nests deeper than 254 levels"):
        ecs(audit(requestObject=_nested(300)))


def test_falco_alert_without_uuid_nested_300_deep_is_a_clean_normalise_error():
    alert = {k: v for k, v in ALERT.items() if k != "uuid"}
    with pytest.raises(NormaliseError, match="nests deeper than 254 levels"):
        N.to_ecs("falco", {**alert, "output_fields": {"x": _nested(300)}}, "json")


def test_nul_key_walk_reaches_any_depth_without_recursion():
    from transforms.ecs.storable import _nul_key_path
    deep = _nested(5000, {"k\x00": 1})
    found = _nul_key_path(deep, "o")
    assert found == "o" + ".a" * 5000 + "['k\\x00']"
    assert _nul_key_path(_nested(5000), "o") is None


def test_nul_key_walk_reports_the_first_key_in_document_order():
    from transforms.ecs.storable import _nul_key_path
    value = {"a": [{"b": 1}, {"c\x00": 1}], "d\x00": 2}
    assert _nul_key_path(value, "o") == "o.a['c\\x00']"
