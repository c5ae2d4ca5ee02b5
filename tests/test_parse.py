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


# --- The guard where records enter: depth, size, exact integers, UTF-8 (issue 13) ---------------

from transforms import parse as parse_module  # noqa: E402
from transforms.parse import MAX_DEPTH, MAX_VALUES  # noqa: E402


def nested(depth: int, key: str = "a") -> bytes:
    """`depth` objects nested inside each other: `nested(2)` == b'{"a":{"a":1}}'."""
    return b'{"%s":' % key.encode() * depth + b"1" + b"}" * depth


def event_with(field: bytes) -> bytes:
    return b'{"kind":"Event","auditID":"a-1","requestObject":' + field + b"}"


def test_a_record_exactly_max_depth_deep_is_accepted():
    # The Event object is one level, so requestObject may hold MAX_DEPTH - 1 more.
    (record, _), = list(records("audit", event_with(nested(MAX_DEPTH - 1))))
    depth, node = 1, record["requestObject"]
    while isinstance(node, dict):
        depth, node = depth + 1, node["a"]
    assert depth == MAX_DEPTH


@pytest.mark.parametrize("extra", [1, 2, 100, 1023 - MAX_DEPTH])
def test_a_record_deeper_than_max_depth_is_refused_naming_the_limit_and_the_path(extra):
    with pytest.raises(ParseError) as err:
        list(records("audit", event_with(nested(MAX_DEPTH - 1 + extra))))
    reason = str(err.value)
    assert f"nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)" in reason
    assert " at requestObject.a.a." in reason and "more)" in reason


def test_deep_arrays_are_refused_with_index_positions_in_the_path():
    deep = b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5)
    with pytest.raises(ParseError, match=r"MAX_DEPTH\) at requestObject\[0\]\[0\]"):
        list(records("audit", event_with(deep)))


def test_a_falco_alert_with_deep_output_fields_is_refused_naming_output_fields():
    alert = b'{"rule":"R","output":"x","output_fields":{"proc.name":' + nested(MAX_DEPTH) + b"}}"
    with pytest.raises(ParseError, match=r"MAX_DEPTH\) at output_fields\.proc\.name\.a"):
        list(records("falco", alert))


def test_an_aks_log_string_is_guarded_like_a_line():
    inner = event_with(nested(MAX_DEPTH)).decode()
    with pytest.raises(ParseError, match=r"AKS properties.log string is nested deeper"):
        list(records("audit", line({"properties": {"log": inner}})))


def test_a_record_with_more_than_max_values_is_refused(monkeypatch):
    monkeypatch.setattr(parse_module, "MAX_VALUES", 50)
    with pytest.raises(ParseError, match=r"more than 50 values \(MAX_VALUES\); exceeded at requestObject"):
        list(records("audit", event_with(b"[" + b",".join([b"0"] * 60) + b"]")))
    assert list(records("audit", event_with(b"[" + b",".join([b"0"] * 40) + b"]")))


def test_every_accepted_record_serialises_with_room_for_the_document_around_it():
    # orjson serialises at most 254 levels; the ECS document nests the record a few levels deeper.
    (record, _), = list(records("audit", event_with(nested(MAX_DEPTH - 1))))
    orjson.dumps({"kubernetes": {"audit": {"x": {"y": record}}}})
    assert MAX_DEPTH + 4 <= 254 and MAX_VALUES > 0


@pytest.mark.parametrize("literal", [
    "18446744073709551616", "123456789012345678901234567890", "-9223372036854775809",
    "-99999999999999999999999999",
])
def test_integers_beyond_64_bits_keep_their_exact_digits_as_strings(literal):
    (record, _), = list(records("audit", event_with(b'{"n":%s,"list":[%s]}' % (literal.encode(), literal.encode()))))
    assert record["requestObject"] == {"n": literal, "list": [literal]}


@pytest.mark.parametrize("value", [18446744073709551615, -9223372036854775808, 1234567890123456789])
def test_integers_within_64_bits_stay_integers(value):
    (record, _), = list(records("audit", event_with(b'{"n":%d}' % value)))
    assert record["requestObject"]["n"] == value and type(record["requestObject"]["n"]) is int


def test_long_digit_runs_inside_strings_and_floats_are_unchanged():
    raw = event_with(b'{"s":"12345678901234567890123","f":1.5e30,"g":12345678901234567890.5}')
    (record, _), = list(records("audit", raw))
    assert record["requestObject"] == {"s": "12345678901234567890123", "f": 1.5e30, "g": 12345678901234567890.5}


@pytest.mark.parametrize(("raw", "offset"), [
    (b'{"kind":"Event","auditID":"\xff"}', 27),
    (b'{"kind":"Event","auditID":"ok","x":"\xed\xa0\x80"}', 36),   # an encoded surrogate
    (b'{"kind":"Event","auditID":"\xc3"}', 27),                    # a truncated sequence
])
def test_invalid_utf8_is_reported_with_its_byte_offset(raw, offset):
    with pytest.raises(ParseError, match=rf"invalid UTF-8 at byte {offset} ") as err:
        list(records("audit", raw))
    assert "surrogates" not in str(err.value)
    assert raw[offset] >= 0x80


def test_invalid_utf8_in_a_falco_line_is_reported_with_its_byte_offset():
    with pytest.raises(ParseError, match=r"falco line is not valid JSON: invalid UTF-8 at byte 9 "):
        list(records("falco", b'{"rule":"\xfe","output":"x"}'))


@pytest.mark.parametrize("source", ["audit", "falco"])
def test_a_utf8_byte_order_mark_before_a_line_is_ignored(source):
    obj = EVENT if source == "audit" else ALERT
    assert [r for r, _ in records(source, b"\xef\xbb\xbf" + line(obj))] == [obj]


def test_a_300_digit_integer_keeps_its_digits_and_one_past_a_double_is_refused():
    (record, _), = list(records("audit", event_with(b'{"n":' + b"9" * 300 + b"}")))
    assert record["requestObject"]["n"] == "9" * 300
    with pytest.raises(ParseError, match="number is infinity"):
        list(records("audit", event_with(b'{"n":' + b"9" * 400 + b"}")))
