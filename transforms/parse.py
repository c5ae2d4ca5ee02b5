"""Decode one input line into the source records it carries.

A line may hold one record, a batch, or a record inside a transport envelope:
- audit: a native ``Event`` (v1 / v1beta1 / no apiVersion); a webhook ``EventList`` (one record per
  item); an AKS diagnostic record whose ``properties.log`` is an Event object or a JSON string of one;
  a GKE Cloud Logging record (``protoPayload``), passed on as its own shape for the normaliser;
- falco: Falco ``json_output``, or a syslog line ``<PRI>TIMESTAMP HOST Falco[PID]: {json}``
  (falcosidekick / rsyslog).

``records(source, line)`` yields ``(record, envelope)`` pairs or raises ``ParseError`` with a specific
reason; the caller turns that into a dead letter. Nothing here knows about ECS.
"""
from __future__ import annotations

from typing import Iterator

import orjson

from transforms.records import AUDIT, FALCO


class ParseError(ValueError):
    """A line that is not a usable record; the message is the dead-letter reason."""


class Envelope(str):
    """The envelope name (``"aks"``; compares and pickles as that string) plus the wrapper's own fields.

    Elastic keeps an AKS diagnostic record's fields under ``kubernetes.audit.aks_metadata``; the
    normaliser does the same from ``meta``. Plain envelopes are plain strings.
    """

    meta: dict

    def __new__(cls, name: str, meta: dict):
        self = super().__new__(cls, name)
        self.meta = meta
        return self

    def __reduce__(self):
        return (Envelope, (str(self), self.meta))


# AKS wrapper key -> Elastic's aks_metadata key.
_AKS_META = {"category": "category", "operationName": "operation_name", "resourceId": "resource_id",
             "serviceBuild": "service_build", "time": "time"}
_AKS_PROPERTIES = {"containerID": "container_id", "pod": "pod", "stream": "stream"}


def _aks_meta(obj: dict) -> dict:
    meta = {new: obj[old] for old, new in _AKS_META.items() if obj.get(old) not in (None, "")}
    props = obj["properties"]
    meta.update({new: props[old] for old, new in _AKS_PROPERTIES.items() if props.get(old) not in (None, "")})
    return meta


def _loads(text: bytes | str, what: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise ParseError(f"{what} is not valid JSON: {err}") from None


def audit_records(obj) -> Iterator[tuple[dict, str]]:
    if not isinstance(obj, dict):
        raise ParseError(f"audit line is a JSON {type(obj).__name__}, not an object")
    kind = obj.get("kind")
    if kind == "Event" or (kind is None and "auditID" in obj):
        yield obj, "event"
    elif kind == "EventList":
        items = obj.get("items")
        if not isinstance(items, list):
            raise ParseError("audit EventList has no 'items' list")
        for item in items:
            if not isinstance(item, dict) or not (item.get("kind", "Event") == "Event" and "auditID" in item):
                raise ParseError("audit EventList item is not an audit Event")
        for item in items:
            yield item, "eventlist"
    elif "protoPayload" in obj:
        payload = obj["protoPayload"]
        if not isinstance(payload, dict) or payload.get("serviceName") != "k8s.io":
            raise ParseError("Cloud Logging record is not a GKE Kubernetes audit record (protoPayload.serviceName != k8s.io)")
        yield obj, "gke"
    elif isinstance(obj.get("properties"), dict) and "log" in obj["properties"]:
        inner = obj["properties"]["log"]
        if isinstance(inner, (str, bytes)):
            inner = _loads(inner, "AKS properties.log string")
        if not isinstance(inner, dict) or "auditID" not in inner:
            raise ParseError("AKS diagnostic record's properties.log is not an audit Event")
        yield inner, Envelope("aks", _aks_meta(obj))
    elif kind is not None:
        raise ParseError(f"JSON object with kind={kind!r} is not an audit Event")
    else:
        raise ParseError("JSON object is not an audit Event (no kind, no auditID)")


_NOT_JSON = object()


def _strip_syslog(line: bytes) -> bytes:
    """`<5>2024-05-07T18:54:19Z host Falco[1]: {...}` -> `{...}`."""
    brace = line.find(b"{")
    if brace <= 0:
        raise ParseError("falco line is neither JSON nor a syslog line carrying JSON")
    head = line[:brace]
    if not (head.startswith(b"<") or b"alco" in head):
        raise ParseError("falco line has text before its JSON that is not a syslog header")
    return line[brace:]


def falco_records(line: bytes, obj=None) -> Iterator[tuple[dict, str]]:
    envelope = "json"
    if obj is None:
        stripped = line.lstrip()
        if not stripped.startswith(b"{"):
            try:
                other = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                other = _NOT_JSON
            if other is not _NOT_JSON:
                raise ParseError(f"falco line is a JSON {type(other).__name__}, not an object")
            obj = _loads(_strip_syslog(stripped), "falco syslog payload")
            envelope = "syslog"
        else:
            obj = _loads(stripped, "falco line")
    if not isinstance(obj, dict):
        raise ParseError(f"falco line is a JSON {type(obj).__name__}, not an object")
    if "rule" not in obj or not ("output_fields" in obj or "output" in obj):
        raise ParseError("JSON object is not a Falco alert (needs 'rule' and 'output'/'output_fields')")
    yield obj, envelope


def records(source: str, line: bytes) -> Iterator[tuple[dict, str]]:
    """All records carried by one line of `source`; raises ParseError."""
    if source == AUDIT:
        yield from audit_records(_loads(line, "audit line"))
    elif source == FALCO:
        yield from falco_records(line)
    else:
        raise ValueError(f"unknown source {source!r}")
