"""What every sink receives: ``SinkItem``, and the one step that makes them.

Events are serialised where they are made (the fused per-event stage, ``transforms.process``), dead
letters and incidents by ``ToSinkItems``; both go through ``sink_item`` (or its hot-loop inline
twin), so a sink never sees another shape. A sink element is one ``SinkItem`` or a list of them
(a chunk: per-element overhead is paid once per ~1000 events).
"""
from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import orjson


class SinkItem(NamedTuple):
    """One document for a sink.

    ``kind`` names the destination (``audit``, ``falco``, ``incidents``, ``dead_letters``); ``id`` is
    the deterministic document id (idempotent writes); ``body`` the serialised document; ``version``
    an external version (incidents: a later, more complete version replaces an earlier one) or None
    (written once: a re-run finds it present).
    """
    kind: str
    id: str
    body: bytes
    version: int | None = None


def sink_item(kind: str, doc: dict) -> SinkItem:
    """A document (dict with ``event.id``) -> its SinkItem; incidents carry their version."""
    incident = (doc.get("kubehunt") or {}).get("incident")
    version = incident.get("version") if isinstance(incident, dict) else None
    return SinkItem(kind, doc["event"]["id"], orjson.dumps(doc), version)


class _ToSinkItemFn(beam.DoFn):
    def __init__(self, kind: str):
        self._kind = kind

    def process(self, doc):
        yield sink_item(self._kind, doc)


class ToSinkItems(beam.PTransform):
    """Documents (dicts: dead letters, incidents) -> ``SinkItem`` of ``kind``."""

    def __init__(self, kind: str):
        super().__init__()
        self._kind = kind

    def expand(self, docs):
        return docs | beam.ParDo(_ToSinkItemFn(self._kind))
