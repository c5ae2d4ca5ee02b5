"""`--keep-original`: the line as read, in ECS `event.original` (Elastic's `preserve_original_event`).

Off by default: the parsed record is already kept under `kubernetes.audit` / `falco`, and a second
copy as text would double every event's size. When on, the index maps it `index: false,
doc_values: false` (stored in `_source` only, as Elastic's integrations map it), so it costs disk,
not indexing. A line that carries several records (an audit `EventList`) gives each document its
own record as JSON text, not the whole list.
"""
from __future__ import annotations

import orjson


def add_original(doc: dict, line: bytes, record: dict, several: bool) -> None:
    """Set `event.original` on `doc` from the input `line` (or `record` when the line held several)."""
    if several:
        text = orjson.dumps(record).decode()
    else:
        text = line.decode("utf-8", "replace").rstrip("\r\n")
    doc.setdefault("event", {})["original"] = text
