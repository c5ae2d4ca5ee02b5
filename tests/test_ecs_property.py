"""Property test: arbitrary nested requestObjects / output_fields (the same key as object, string,
number, list across events), arbitrary values in typed fields, and junk lines. Nothing crashes, every
input line is accounted for (documents or a dead letter with a reason), and the real Elasticsearch,
with our index templates, rejects nothing.

All examples index into the same two data streams on purpose: a type conflict *across* events is the
failure this guards against.
"""
from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_templates import bulk_create, normalise_lines, streams  # noqa: F401 - fixture

pytestmark = pytest.mark.elasticsearch

KEYS = st.sampled_from(["spec", "x", "containers", "metadata", "name", "a.b", "", " ", "proc.name", "securityContext"])
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=4), max_leaves=25)

AUDIT_FIELDS = ["verb", "user", "impersonatedUser", "objectRef", "responseStatus", "sourceIPs", "userAgent",
                "stage", "annotations", "requestURI", "stageTimestamp", "apiVersion", "level"]


@st.composite
def audit_line(draw) -> bytes:
    event = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": draw(st.text(min_size=1, max_size=40)),
             "stage": "ResponseComplete", "verb": "create", "user": {"username": "system:serviceaccount:a:b"},
             "objectRef": {"resource": "pods", "namespace": "ns", "name": "p"}, "sourceIPs": ["10.0.0.1"],
             "requestReceivedTimestamp": draw(st.sampled_from(
                 ["2024-01-02T03:04:05.123456Z", "2024-01-02T03:04:05Z", "1960-01-01T00:00:00Z", "bad", ""])),
             "requestObject": draw(st.dictionaries(KEYS, JSON, max_size=4)),
             "responseObject": draw(JSON)}
    for field in draw(st.lists(st.sampled_from(AUDIT_FIELDS), max_size=3)):
        event[field] = draw(JSON)
    shape = draw(st.sampled_from(["event", "eventlist", "aks", "aks-string"]))
    if shape == "eventlist":
        return orjson.dumps({"kind": "EventList", "items": [event, {**event, "auditID": "second"}]})
    if shape == "aks":
        return orjson.dumps({"category": "kube-audit", "properties": {"log": event, "pod": draw(JSON)}})
    if shape == "aks-string":
        return orjson.dumps({"category": "kube-audit", "properties": {"log": orjson.dumps(event).decode()}})
    return orjson.dumps(event)


FALCO_KEYS = st.sampled_from(["proc.name", "proc.pid", "evt.time", "evt.time.iso8601", "evt_time", "container.id",
                              "container.privileged", "fd.cip", "fd.name", "fd.type", "k8s.pod.labels", "user.uid",
                              "proc.aname[2]", "proc.env", "proc.pid.ts", "evt.type", "k8s.ns.name"])


@st.composite
def falco_line(draw) -> bytes:
    alert = {"rule": draw(st.text(max_size=20) | JSON), "output": draw(st.text(max_size=30)),
             "priority": draw(st.sampled_from(["Warning", "CRITICAL", "notice", "x"]) | JSON),
             "time": draw(st.sampled_from(["2024-05-07T18:54:19.341081180Z", "nope"]) | JSON),
             "tags": draw(st.lists(st.sampled_from(["T1059", "T1059.004", "mitre_execution", "TA0003", ""]) | JSON,
                                   max_size=4) | JSON),
             "output_fields": draw(st.dictionaries(FALCO_KEYS | KEYS, JSON, max_size=6) | JSON)}
    for field in draw(st.lists(st.sampled_from(["hostname", "uuid", "source", "output"]), max_size=2)):
        alert[field] = draw(JSON)
    raw = orjson.dumps(alert)
    return b"<5>2024-05-07T18:54:19Z host Falco[1]: " + raw if draw(st.booleans()) else raw


JUNK = st.binary(max_size=60) | JSON.map(orjson.dumps) | st.dictionaries(KEYS, JSON).map(orjson.dumps)


def check(es, stream: str, source: str, lines: list[bytes]) -> None:
    docs, dead, bodies = [], [], 0
    for line in lines:
        line_docs, line_dead = normalise_lines(source, [line])
        good = []
        for doc in line_docs:
            try:
                orjson.dumps(doc)
                good.append(doc)
            except TypeError as err:  # the sink's own stage would dead-letter this
                line_dead.append((line, "serialise", str(err)))
        # Accounted for: documents, or dead letters with a reason (an EventList may give both).
        assert good or line_dead, line
        assert all(reason for _, _, reason in line_dead)
        docs += good
        dead += line_dead
    assert bulk_create(es, stream, docs) == []


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])


@SETTINGS
@given(lines=st.lists(audit_line() | JUNK, min_size=1, max_size=8))
def test_arbitrary_audit_input_is_accounted_for_and_never_rejected(es, streams, lines):
    check(es, streams["audit"], "audit", lines)


@SETTINGS
@given(lines=st.lists(falco_line() | JUNK, min_size=1, max_size=8))
def test_arbitrary_falco_input_is_accounted_for_and_never_rejected(es, streams, lines):
    check(es, streams["falco"], "falco", lines)
