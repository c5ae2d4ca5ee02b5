"""Shapes shared by every stage: sources, output tags, dead letters and counter names.

A dead letter is a plain dict (it is written as-is to the dead-letter index or file):
``{"@timestamp", "kubehunt": {"dead_letter": {"stage", "reason", "source", "origin", "line", "raw"}}}``
The raw input is kept as text (undecodable bytes replaced) and capped so a dead letter can never be
rejected by the sink for size.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

from transforms import sources as _sources

AUDIT = _sources.AUDIT_SOURCE.name
FALCO = _sources.FALCO_SOURCE.name
SOURCES = _sources.NAMES

DATASETS = {s.name: s.dataset for s in _sources.ALL}

# Tagged outputs.
DEAD_LETTER = "dead_letter"
CORRELATION = "correlation"

# Counter namespace and names (read by pipeline.summary).
METRICS_NAMESPACE = "kubehunt"

MAX_RAW_CHARS = 32 * 1024


def counter_name(kind: str, qualifier: str) -> str:
    """`lines_read.audit`, `events.falco`, `dead.parse`, `written.events` ..."""
    return f"{kind}.{qualifier}"


def dead_letter(stage: str, reason: str, raw: bytes | str | Any, *, source: str = "",
                origin: str = "", line: int | None = None) -> dict:
    """Build a dead-letter document. `raw` is the original input (bytes, text or an object)."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw
    else:
        try:
            import orjson
            text = orjson.dumps(raw, default=str).decode()
        except TypeError:
            text = repr(raw)
    truncated = len(text) > MAX_RAW_CHARS
    if truncated:
        text = text[:MAX_RAW_CHARS]
    # Deterministic id: a retried bundle or a re-run dead-letters the same input onto the same document.
    digest = hashlib.blake2b(f"{stage}\x00{source}\x00{origin}\x00{line}\x00".encode() + text.encode(),
                             digest_size=16).hexdigest()
    return {
        "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": {"kind": "pipeline_error", "dataset": "kubehunt.dead_letters", "id": f"dl-{digest}"},
        "error": {"message": reason},
        "kubehunt": {"dead_letter": {
            "stage": stage, "reason": reason, "source": source, "origin": origin,
            "line": line, "raw": text, "raw_truncated": truncated,
        }},
    }
