"""`Normaliser`: one source record -> one ECS document (the contract every later stage relies on)."""
from __future__ import annotations

import reprlib

from transforms.ecs import audit, falco
from transforms.ecs.codegen import load_mapping
from transforms.ecs.errors import NormaliseError
from transforms.ecs.gke import gke_to_event
from transforms.ecs.ids import _event_id
from transforms.ecs.times import storable_time
from transforms.records import AUDIT, FALCO

_TIMES = {AUDIT: audit, FALCO: falco}
_MAX_SHOWN = 80  # characters of an offending value in a reason (the raw line is in the dead letter)
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = _MAX_SHOWN, _MAX_SHOWN, 3


def _shown(value) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def no_time_reason(source: str, record: dict) -> str:
    """The dead-letter reason of a record without a usable time: the fields looked at and what they held."""
    times = _TIMES[source]
    found = times.time_candidates(record)
    if not found:
        return f"{source} record has no usable event time: none of {', '.join(times.TIME_FIELDS)} is set"
    held = ", ".join(f"{name}={_shown(value)}" for name, value in found)
    return (f"{source} record has no usable event time: looked at {', '.join(times.TIME_FIELDS)}; "
            f"none holds a usable time ({held})")


class Normaliser:
    """Compiled mappings for both sources; `to_ecs` turns one record into one ECS document."""

    def __init__(self, mapping_dir: str | None = None):
        self._maps = {source: load_mapping(source, mapping_dir) for source in (AUDIT, FALCO)}

    def to_ecs(self, source: str, record: dict, envelope: str = "") -> dict:
        mapping = self._maps[source]
        if type(record) is not dict:
            raise NormaliseError(f"{source} record is a {type(record).__name__}, not an object")
        if source == AUDIT:
            ident, canonical = _event_id(AUDIT, record)
            if envelope == "gke":
                record = gke_to_event(record)
            view = record
            # Plain envelopes are plain strings; only an Envelope carries the wrapper's fields.
            meta = getattr(envelope, "meta", None) if type(envelope) is not str else None
            if meta:
                # Elastic keeps the AKS wrapper's fields next to the Event; a shallow copy, so the
                # caller's record is not touched.
                view = {**record, "aks_metadata": meta}
        else:
            ident, canonical = _event_id(FALCO, record)
            view = record
        # orjson writes NUL as \u0000: when the serialised record has none, no key has one.
        reason = mapping.check(view, canonical is None or b"\\u0000" in canonical)
        if reason:
            raise NormaliseError(reason)
        doc = mapping.apply(record)
        ts = doc.get("@timestamp")
        if ts is None:
            raise NormaliseError(no_time_reason(source, record))
        if not storable_time(ts):
            raise NormaliseError(f"{source} event time {ts} is outside 1970..2261 (stored at nanosecond precision)")
        event = doc.setdefault("event", {})
        event["dataset"] = mapping.dataset
        event["id"] = ident
        node = doc
        for key in mapping.original[:-1]:
            node = node.setdefault(key, {})
        node[mapping.original[-1]] = view
        return doc
