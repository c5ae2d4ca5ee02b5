"""Decode one input line into the source records it carries.

A line may hold one record, a batch, or a record inside a transport envelope:
- audit: a native ``Event`` (v1 / v1beta1 / no apiVersion); a webhook ``EventList`` (one record per
  item); an AKS diagnostic record whose ``properties.log`` is an Event object or a JSON string of one;
  a GKE Cloud Logging record (``protoPayload``), passed on as its own shape for the normaliser;
- falco: Falco ``json_output``, or a syslog line ``<PRI>TIMESTAMP HOST Falco[PID]: {json}``
  (falcosidekick / rsyslog).

``records(source, line)`` yields ``(record, envelope)`` pairs or raises ``ParseError`` with a specific
reason; the caller turns that into a dead letter. Nothing here knows about ECS.

This is also where records enter the pipeline, so the one guard against poison pills lives here
(``_guard``): every JSON value parsed from input is checked, without recursion, against
``MAX_DEPTH`` and ``MAX_VALUES`` before anything downstream (the id digest, the mapping checks,
``orjson.dumps``) walks it recursively. Integers beyond 64 bits keep their exact digits (as strings)
instead of becoming floats; invalid UTF-8 is reported with its byte offset. docs/operations.md
("Limits") states each limit and what happens past it.
"""
from __future__ import annotations

import json
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


# Nested objects/arrays a record may have (`{"a": 1}` is 1 deep). orjson parses 1024 levels but
# serialises only 254; the document nests the record 2-3 levels deeper (kubernetes.audit.requestObject,
# falco.output_fields), and the mapping checks and the id digest recurse. 200 leaves room for all.
MAX_DEPTH = 200
# Values (objects, arrays, scalars) a record may hold: bounds the per-record work and memory of every
# later walk. A real audit Event holds hundreds, a large list response tens of thousands.
MAX_VALUES = 1_000_000
# Past this magnitude orjson turns an integer literal into a float and loses digits.
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
# Digits -> "0", everything else -> " ": a run of 19 zeros means a literal that may not fit 64 bits.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def _path_text(parts: list) -> str:
    """A field path for a reason: `requestObject.spec[3].a`, elided in the middle when very deep."""
    if len(parts) > 16:
        parts = [*parts[:8], f"...({len(parts) - 14} more)...", *parts[-6:]]
    out = ""
    for part in parts:
        out += f"[{part}]" if type(part) is int else (f".{part}" if out else str(part))
    return out or "(top level)"


def _guard(value, what: str) -> None:
    """Refuse a value nested deeper than MAX_DEPTH or holding more than MAX_VALUES values.

    Iterative (an explicit stack), so a 1000-deep record cannot exhaust the interpreter's stack here;
    the path is rebuilt only on failure, from parent links kept per container.
    """
    # (container, depth, parent entry, key in parent)
    stack = [(value, 1, None, None)]
    seen = 0
    while stack:
        entry = stack.pop()
        node, depth = entry[0], entry[1]
        items = node.items() if type(node) is dict else enumerate(node)
        seen += len(node)
        if seen > MAX_VALUES:
            raise ParseError(f"{what} holds more than {MAX_VALUES:,} values (MAX_VALUES); "
                             f"exceeded at {_path_text(_parts(entry))}")
        for key, item in items:
            if type(item) is dict or type(item) is list:
                if depth >= MAX_DEPTH:
                    raise ParseError(f"{what} is nested deeper than {MAX_DEPTH} levels (MAX_DEPTH) at "
                                     f"{_path_text(_parts(entry) + [key])}")
                if item:
                    stack.append((item, depth + 1, entry, key))


def _parts(entry) -> list:
    parts = []
    while entry is not None and entry[2] is not None:
        parts.append(entry[3])
        entry = entry[2]
    return parts[::-1]


def _exact_int(text: str):
    if len(text) > 21:   # past 64 bits for sure; never hand int() a long run (Python caps its digits)
        return text
    value = int(text)
    return value if _INT_MIN <= value <= _INT_MAX else text


def _utf8_reason(text: bytes | str) -> str | None:
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as err:
            return f"invalid UTF-8 at byte {err.start} ({text[err.start:err.start + 4]!r})"
    return None


def _loads(text: bytes | str, what: str):
    """Parse JSON from input; every value parsed from input goes through here and the guard."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        reason = _utf8_reason(text) if "UTF-8" in str(err) else None
        raise ParseError(f"{what} is not valid JSON: {reason or err}") from None
    if type(value) is dict or type(value) is list:
        raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        # Cheap bounds first (C speed): depth <= brackets, values <= bytes; walk only when they allow more.
        if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH or len(raw) > MAX_VALUES:
            _guard(value, what)
        if _LONG_DIGIT_RUN in raw.translate(_DIGITS):
            # Rare: a 19+ digit run (maybe inside a string). Re-parse with exact integers; out-of-range
            # ones stay as their digits (a string), never a float that silently loses them.
            value = json.loads(text, parse_int=_exact_int)
    return value


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
_BOM = b"\xef\xbb\xbf"


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
                other = _NOT_JSON  # not JSON: maybe syslog; _loads below gives the reason
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
    if line[:3] == _BOM:   # a UTF-8 byte-order mark (Windows tools write one at the top of a file)
        line = line[3:]
    if source == AUDIT:
        yield from audit_records(_loads(line, "audit line"))
    elif source == FALCO:
        yield from falco_records(line)
    else:
        raise ValueError(f"unknown source {source!r}")
