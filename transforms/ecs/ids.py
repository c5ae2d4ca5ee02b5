"""Deterministic document ids (DESIGN.md "Idempotent writes"): a retry or re-run overwrites, never duplicates."""
from __future__ import annotations

import hashlib

import orjson

from transforms.ecs.errors import NormaliseError
from transforms.records import AUDIT

# Elasticsearch ids are at most 512 bytes; source ids (auditID, uuid) are client data.
_MAX_ID_PART = 128
# orjson serialises at most this many levels of nesting (it parses up to 1024).
_MAX_DEPTH = 254


def _digest(data: bytes) -> str:
    # 96 bits of SHA-256: measured faster here than blake2b on ~2-3 KB events (SHA extensions).
    return hashlib.sha256(data).hexdigest()[:24]


def _id_part(value, default: str) -> str:
    text = value if type(value) is str and value else default
    return text if len(text) <= _MAX_ID_PART else _digest(text.encode())


def event_id(source: str, record: dict) -> str:
    """Deterministic document id.

    audit: auditID + stage + a digest of the whole record, so a re-shipped identical event dedupes
    while two different events that reuse an auditID + stage (Elastic's own samples do) stay apart.
    falco: Falco's `uuid` when present, else a digest of the whole alert.
    Digests are taken over the record re-serialised with sorted keys, so the same event shipped in an
    EventList, an AKS wrapper or on its own gets the same id. Over-long client ids are digested
    (Elasticsearch ids are at most 512 bytes).
    """
    return _event_id(source, record)[0]


def _canonical(source: str, record: dict) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as err:
        # Parsed JSON is always serialisable, except past orjson's nesting limit (254 levels); such a
        # record could not be written either, so it is a dead letter, not a crash.
        raise NormaliseError(f"{source} record cannot be serialised for its id ({err}): "
                             f"it nests deeper than {_MAX_DEPTH} levels") from None


def _event_id(source: str, record: dict) -> tuple[str, bytes | None]:
    """(id, the canonical bytes when they were made)."""
    if source == AUDIT:
        canonical = _canonical(source, record)
        audit_id = record.get("auditID") or record.get("insertId")
        stage = record.get("stage")
        return f"{_id_part(audit_id, 'none')}-{_id_part(stage, 'none')[:16]}-{_digest(canonical)}", canonical
    uuid = record.get("uuid")
    if type(uuid) is str and uuid:
        return _id_part(uuid, ""), None
    canonical = _canonical(source, record)
    return f"falco-{_digest(canonical)}", canonical
