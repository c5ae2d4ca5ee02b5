"""Exactly once across rollovers: drop documents whose id already exists anywhere in a data stream.

Elasticsearch enforces ``_id`` uniqueness per backing index only: after a data stream rolls over, a
``create`` of an id that the old backing index holds succeeds in the new write index, and the data
stream then holds two copies. A backfill that is re-run (after a kill, or with a lost checkpoint)
therefore asks, before ``create``, which ids of each batch already exist in the data stream (one
``ids`` search over all its backing indices per chunk) and sends only the others.

Only backfill re-runs turn this on (``EsSettings.dedupe_existing``): it costs one search per chunk,
and on a first run nothing can exist yet. Only data-stream destinations (audit, Falco) need it: the
incidents and dead-letter destinations are plain indices, where ``create`` / external versions
already are exact. The search is near-real-time: documents written in the last refresh interval (1 s)
by a concurrent writer could be missed, which a re-run after a kill never meets. A rollover in the
middle of one run is not covered (ids of that run written before it are not looked up).
"""
from __future__ import annotations

import collections

from transforms.records import AUDIT, FALCO

DATA_STREAM_KINDS = (AUDIT, FALCO)


class ExistingIds:
    """Built on the worker (``BulkWriteFn.setup``) with the sink's own client."""

    def __init__(self, client, indices: dict[str, str], kinds=DATA_STREAM_KINDS):
        self._client = client
        self._indices = {k: v for k, v in indices.items() if k in kinds}

    def existing(self, index: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 5000):
            part = ids[start:start + 5000]
            resp = self._client.search(index=index, query={"ids": {"values": part}}, size=len(part),
                                       source=False, filter_path="hits.hits._id",
                                       ignore_unavailable=True, allow_no_indices=True)
            found.update(hit["_id"] for hit in (resp.body.get("hits") or {}).get("hits", ()))
        return found

    def drop_present(self, items: list, count) -> list:
        """``items`` less those already in their data stream; those are counted by ``count(name, n)`` as
        received and already present, so the sink's books still balance."""
        by_kind: dict[str, list[str]] = collections.defaultdict(list)
        for item in items:
            if item[0] in self._indices:
                by_kind[item[0]].append(item[1])
        if not by_kind:
            return items
        present: set[tuple[str, str]] = set()
        for kind, ids in by_kind.items():
            present.update((kind, i) for i in self.existing(self._indices[kind], ids))
        if not present:
            return items
        kept = [item for item in items if (item[0], item[1]) not in present]
        dropped = collections.Counter(item[0] for item in items if (item[0], item[1]) in present)
        for kind, n in dropped.items():
            count(f"es.received.{kind}", n)
            count(f"present.{kind}", n)
        return kept
