"""`transforms.parse.records`: every line shape of both sources, and a specific reason for each refusal."""
from __future__ import annotations

import json
import pickle

import orjson
import pytest

from tests.conftest import shared
from transforms.parse import Envelope, ParseError, records

EVENT = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": "ResponseComplete",
         "verb": "get", "requestReceivedTimestamp": "2024-01-02T03:04:05.123456Z"}


def line(obj) -> bytes:
    return orjson.dumps(obj)


@pytest.mark.parametrize("event", [
    EVENT,
    {**EVENT, "apiVersion": "audit.k8s.io/v1beta1"},
    {k: v for k, v in EVENT.items() if k not in ("kind", "apiVersion")},
], ids=["v1", "v1beta1", "no-kind-no-apiVersion"])
def test_native_event_is_one_record(event):
    assert list(records("audit", line(event))) == [(event, "event")]


def test_eventlist_gives_one_record_per_item_in_order():
    items = [{**EVENT, "auditID": f"a-{i}"} for i in range(3)]
    out = list(records("audit", line({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})))
    assert out == [(item, "eventlist") for item in items]


def test_eventlist_with_a_non_event_item_is_refused_with_the_reason():
    with pytest.raises(ParseError, match="EventList item is not an audit Event"):
        list(records("audit", line({"kind": "EventList", "items": [EVENT, {"kind": 0}]})))


def test_aks_wrapper_with_object_log_keeps_wrapper_fields_as_metadata():
    wrapper = {"category": "kube-audit", "operationName": "op", "resourceId": "/SUBS/x", "serviceBuild": "na",
               "time": "2024-01-02T03:04:06Z", "properties": {"log": EVENT, "pod": "kube-apiserver-1",
                                                              "containerID": "c1", "stream": "stdout"}}
    (record, envelope), = list(records("audit", line(wrapper)))
    assert record == EVENT and envelope == "aks"
    assert envelope.meta == {"category": "kube-audit", "operation_name": "op", "resource_id": "/SUBS/x",
                             "service_build": "na", "time": "2024-01-02T03:04:06Z", "container_id": "c1",
                             "pod": "kube-apiserver-1", "stream": "stdout"}


def test_aks_wrapper_with_string_log_is_parsed_twice():
    wrapper = {"category": "kube-audit", "properties": {"log": json.dumps(EVENT)}}
    assert [r for r, _ in records("audit", line(wrapper))] == [EVENT]


def test_aks_wrapper_whose_log_is_not_json_says_so():
    with pytest.raises(ParseError, match="AKS properties.log string is not valid JSON"):
        list(records("audit", line({"properties": {"log": "not json"}})))


def test_envelope_pickles_with_its_metadata():
    env = Envelope("aks", {"pod": "p"})
    back = pickle.loads(pickle.dumps(env))
    assert back == "aks" and back.meta == {"pod": "p"}


def test_gke_record_is_passed_on_whole_for_the_normaliser():
    gke = {"protoPayload": {"serviceName": "k8s.io", "methodName": "io.k8s.core.v1.pods.get"}, "insertId": "x"}
    assert list(records("audit", line(gke))) == [(gke, "gke")]


def test_cloud_logging_record_of_another_service_is_refused():
    with pytest.raises(ParseError, match="serviceName != k8s.io"):
        list(records("audit", line({"protoPayload": {"serviceName": "compute.googleapis.com"}})))


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"kind":0}', "kind=0 is not an audit Event"),
    (b'{"kind":"Pod","metadata":{}}', "kind='Pod' is not an audit Event"),
    (b'{"hello":"world"}', "no kind, no auditID"),
    (b'[1,2]', "is a JSON list, not an object"),
    (b'"text"', "is a JSON str, not an object"),
    (b'{"kind":"Event",', "audit line is not valid JSON"),
    (b'\xff\xfe garbage', "audit line is not valid JSON"),
])
def test_audit_non_events_are_refused_with_a_specific_reason(raw, reason):
    with pytest.raises(ParseError, match=reason.replace("(", r"\(").replace("[", r"\[")):
        list(records("audit", raw))


ALERT = {"output": "x", "priority": "Warning", "rule": "R", "time": "2024-05-07T18:54:19.341081180Z",
         "output_fields": {"proc.name": "sh"}}


def test_falco_json_output_line():
    assert list(records("falco", line(ALERT))) == [(ALERT, "json")]


def test_falco_syslog_line_carries_the_json():
    raw = b"<5>2024-05-07T18:54:19Z node-1 Falco[1]: " + line(ALERT)
    assert list(records("falco", raw)) == [(ALERT, "syslog")]


@pytest.mark.parametrize(("raw", "reason"), [
    (b"hello world", "neither JSON nor a syslog line"),
    (b"random text {\"rule\": 1}", "not a syslog header"),
    (b'{"rule":"R"}', "not a Falco alert"),
    (b'{"output":"x"}', "not a Falco alert"),
    (b'<5>x host Falco[1]: {"rule":', "falco syslog payload is not valid JSON"),
    (b'[]', "is a JSON list"),
])
def test_falco_non_alerts_are_refused_with_a_specific_reason(raw, reason):
    with pytest.raises(ParseError, match=reason.replace("[", r"\[")):
        list(records("falco", raw))


def test_every_real_sample_line_parses_or_has_a_specific_reason():
    reasons = {}
    for source in ("audit", "falco"):
        for path in sorted(shared(source).rglob("*")):
            if not path.is_file():
                continue
            for raw in path.read_bytes().splitlines():
                if not raw.strip():
                    continue
                try:
                    assert list(records(source, raw))
                except ParseError as err:
                    reasons[path.name] = str(err)
    # The one non-Event line among the samples (falco's k8s_audit traces ship `{"kind":0}`).
    assert reasons == {"fal_01_003.json": "JSON object with kind=0 is not an audit Event"}
