"""`Normaliser`: one source record -> one ECS document (the contract every later stage relies on)."""
from __future__ import annotations

from transforms.ecs.codegen import load_mapping
from transforms.ecs.errors import NormaliseError
from transforms.ecs.gke import gke_to_event
from transforms.ecs.ids import _event_id
from transforms.ecs.times import storable_time
from transforms.records import AUDIT, FALCO


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
            meta = getattr(envelope, "meta", None)
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
            raise NormaliseError(f"{source} record has no usable event time")
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
