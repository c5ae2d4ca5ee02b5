"""One match per request: an API request logged at several stages is tagged on one of them only.

API servers log a request at each stage the audit policy keeps (RequestReceived, ResponseStarted,
ResponseComplete, Panic), with the same ``auditID``. A hunt that matches several stages of one request
keeps its match on the latest stage only (the final one when it is logged, else the earliest
the log holds), so counts are per request, not per log line.

Memory stays bounded: nothing is grouped by auditID across the stream. The catalogue remembers only
the audit events *that matched a hunt* in the current chunk (``PendingMatches``, capped), and the
stages of one request sit next to each other in a log, so one chunk of lines holds them. At the end
of a chunk, ``settle`` untags the earlier stages in that chunk and re-serialises only those
documents. A request whose stages straddle two chunks keeps both matches (documented limit).
"""
from __future__ import annotations

import copy
from typing import Callable

import orjson

STAGE_RANK = {"RequestReceived": 0, "ResponseStarted": 1, "ResponseComplete": 2, "Panic": 2}
MAX_PENDING = 20_000  # matching staged events remembered between two settle() calls


class PendingMatches:
    """The current chunk's staged audit matches: (auditID, rank, order, doc, hunts, pre-tag snapshot)."""

    def __init__(self):
        self.items: list[tuple] = []

    def note(self, doc: dict, hunts: list) -> None:
        audit = doc.get("kubernetes", {}).get("audit") if isinstance(doc.get("kubernetes"), dict) else None
        if not isinstance(audit, dict):
            return
        audit_id, rank = audit.get("auditID"), STAGE_RANK.get(audit.get("stage"))
        if not isinstance(audit_id, str) or rank is None:
            return
        if len(self.items) >= MAX_PENDING:
            del self.items[: MAX_PENDING // 2]  # nobody settles (a caller tagging by hand): stay bounded
        event = doc.get("event") if isinstance(doc.get("event"), dict) else {}
        snapshot = (copy.deepcopy(doc.get("threat")), event.get("risk_score"), "threat" in doc,
                    "risk_score" in event)
        self.items.append((audit_id, rank, len(self.items), doc, hunts, snapshot))

    def superseded(self) -> dict[int, tuple[dict, tuple, list]]:
        """id(doc) -> (doc, snapshot, hunts it keeps) for documents that lose at least one hunt."""
        best: dict[tuple[str, str], tuple[int, int]] = {}
        for audit_id, rank, order, _, hunts, _ in self.items:
            for hunt in hunts:
                key = (audit_id, hunt.id)
                if key not in best or rank > best[key][0]:
                    best[key] = (rank, order)   # ties: the first logged keeps it
        out = {}
        for audit_id, rank, order, doc, hunts, snapshot in self.items:
            keep = [h for h in hunts if best[(audit_id, h.id)][1] == order]
            if len(keep) != len(hunts):
                out[id(doc)] = (doc, snapshot, keep, [h.id for h in hunts if h not in keep])
        return out


def settle(pending: PendingMatches, out: list, hits: dict[str, int], apply_tags: Callable) -> list:
    """Untag earlier stages of requests matched again later in the chunk; fix `out` and `hits` in place.

    `out` holds the chunk's ``SinkItem``s; only the superseded documents are re-serialised.
    """
    lost = pending.superseded()
    pending.items.clear()
    if not lost:
        return out
    by_event_id = {}
    for doc, snapshot, keep, dropped in lost.values():
        threat, risk, had_threat, had_risk = snapshot
        doc.get("kubehunt", {}).pop("hunts", None)
        doc.pop("threat", None)
        doc.get("event", {}).pop("risk_score", None)
        if had_threat:
            doc["threat"] = threat
        if had_risk:
            doc["event"]["risk_score"] = risk
        if keep:
            apply_tags(doc, keep)
        if not doc.get("kubehunt"):
            doc.pop("kubehunt", None)
        for hunt_id in dropped:
            hits[hunt_id] = hits.get(hunt_id, 0) - 1
            if hits[hunt_id] <= 0:
                del hits[hunt_id]
        by_event_id[doc["event"]["id"]] = doc
    for i, item in enumerate(out):
        doc = by_event_id.get(item[1])
        if doc is not None:
            out[i] = item._replace(body=orjson.dumps(doc))
    return out
