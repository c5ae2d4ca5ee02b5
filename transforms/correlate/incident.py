"""Stage 3 of the join: incident documents, keyed by alert id, from its ``Resolution`` and ``Pair``s.

Batch: one final document per incident (timer at t + window + lateness). Streaming (``early``): also
early versions (first action, every doubling of the action count, confirmation, SA change); versions
only move forward, so the versioned sink keeps the most complete one.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Iterable

import apache_beam as beam
from apache_beam.coders import BytesCoder, PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer

from transforms.correlate.messages import SA_SOURCES, Pair, Resolution, pack, unpack
from transforms.correlate.resolve import ts
from transforms.records import METRICS_NAMESPACE

SEVERITY_CONFIRMED = 99  # critical
SEVERITY_CANDIDATE = 73  # high
INCIDENT_DATASET = "kubehunt.incidents"


@lru_cache(maxsize=1 << 14)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def iso_ms(t_ms: int) -> str:
    """``2026-12-02T10:00:00.123Z``. An incident lists every joined action with its time, and the
    actions of a busy account share their seconds: each second is formatted once (~1 µs a call
    instead of ~4; it was 1.7 s of a 400k-event run of scripts/bench.py's corpus)."""
    seconds, ms = divmod(t_ms, 1000)
    return f"{_iso_second(seconds)}{ms:03d}Z"


def _action_view(action, views: dict) -> dict:
    # Keyed by identity: the group's actions list holds every action for as long as `views` lives,
    # and an action's fields are client data (a hostile verb may be a dict: unhashable).
    view = views.get(id(action))
    if view is None:
        view = views[id(action)] = {"@timestamp": iso_ms(action.t_ms), "event_id": action.event_id,
                                "verb": action.verb, "resource": action.resource}
    return view


def build_incident(alert_id: str, resolution: Resolution, pairs: Iterable[Pair], version: int,
                   views: dict | None = None) -> dict | None:
    """The incident document of an alert from its resolution and its pairs (of any SA; others ignored).

    ``views``: the actions' entries already made for other incidents of the same group, by the
    action's identity (read-only dicts shared by the documents; the caller keeps the actions alive
    while it keeps ``views``): a burst of alerts in one pod lists the same actions again and
    again, up to tens of thousands of them per incident."""
    views = {} if views is None else views
    sa = resolution.sa
    by_id: dict = {}
    for pair in pairs:
        if pair.sa == sa:
            for action in pair.actions:
                by_id[action.event_id] = action
    if not by_id:
        return None
    chosen = sorted(by_id.values(), key=lambda a: (a.t_ms, a.event_id))
    hunts = sorted({h for a in chosen for h in a.hunts})
    confirmed = any(a.confirms for a in chosen)
    a_ms, rule, ns, pod = resolution.t_ms, resolution.rule, resolution.ns, resolution.pod
    return {
        "@timestamp": iso_ms(a_ms),
        "event": {
            "kind": "alert", "id": f"incident-{alert_id}", "dataset": INCIDENT_DATASET,
            "category": ["intrusion_detection"], "type": ["indicator"],
            "severity": SEVERITY_CONFIRMED if confirmed else SEVERITY_CANDIDATE,
            "start": iso_ms(a_ms), "end": iso_ms(chosen[-1].t_ms),
        },
        "rule": {"name": rule} if rule else {},
        "user": {"name": sa},
        "orchestrator": {"namespace": ns, "resource": {"type": "pod", "name": pod}},
        "kubehunt": {"incident": {
            "service_account": sa, "sa_source": resolution.source, "pod": pod, "namespace": ns,
            "alert": alert_id, "alert_rule": rule, "alert_time": iso_ms(a_ms),
            "first_action_time": iso_ms(chosen[0].t_ms), "last_action_time": iso_ms(chosen[-1].t_ms),
            "audit_event_ids": sorted(by_id),
            "actions": [_action_view(a, views) for a in chosen],
            "action_count": len(chosen),
            "hunts": hunts, "confirmed": confirmed, "version": version,
        }},
    }


def base_version(action_count: int, rank: int) -> int:
    """Grows with the joined actions, then with a better SA source: re-runs over more data win."""
    return action_count * 4 + rank


def final_incident(alert_id: str, resolution: Resolution, pairs: Iterable[Pair],
                   views: dict | None = None) -> dict | None:
    """``build_incident`` with the version its content gives (``base_version``): the only version a
    batch run publishes, and the first one of a streaming run."""
    doc = build_incident(alert_id, resolution, pairs, 0, views)
    if doc is not None:
        inc = doc["kubehunt"]["incident"]
        inc["version"] = base_version(inc["action_count"], resolution.rank)
    return doc


def _new_progress() -> dict:
    return {"counts": {}, "confirmed": {}, "emitted": None}


class AssembleIncidentFn(beam.DoFn):
    """Keyed by alert id: ``Resolution``s + ``Pair``s -> incident documents, as ``(final, doc)``."""

    RESOLUTION = ReadModifyWriteStateSpec("resolution", PickleCoder())
    PAIRS = BagStateSpec("pairs", BytesCoder())   # packed Pairs (messages.pack)
    PROGRESS = ReadModifyWriteStateSpec("progress", PickleCoder())
    FINAL = TimerSpec("final", TimeDomain.WATERMARK)

    def __init__(self, window_ms: int, lateness_ms: int, early: bool):
        self._window_ms, self._lateness_ms, self._early = window_ms, lateness_ms, early

    def process(self, element, resolution_state=beam.DoFn.StateParam(RESOLUTION),
                pairs=beam.DoFn.StateParam(PAIRS), progress_state=beam.DoFn.StateParam(PROGRESS),
                final=beam.DoFn.TimerParam(FINAL)):
        alert_id, value = element
        before = 0
        is_pair = type(value) is Pair
        if not is_pair:
            resolution = resolution_state.read()
            if resolution is not None and resolution.rev >= value.rev:
                # an older decision overtaken in flight
                return
            resolution = value
            resolution_state.write(resolution)
            final.set(ts(value.t_ms + self._window_ms + self._lateness_ms + 1))
        else:
            pairs.add(pack(value))
        if not self._early:
            # Only the final version is published (timer): no progress to keep. Every state access
            # costs the SDK's state cache a fixed ~0.2 ms (it weighs the value), so skip them.
            return
        resolution = resolution_state.read() if is_pair else resolution
        progress = progress_state.read() or _new_progress()
        if is_pair:
            before = progress["counts"].get(value.sa, 0)
            progress["counts"][value.sa] = before + len(value.actions)
            if any(a.confirms for a in value.actions):
                progress["confirmed"][value.sa] = True
        if resolution is not None:
            sa = resolution.sa
            count = progress["counts"].get(sa, 0)
            emitted = progress["emitted"]
            due = count > 0 and (
                emitted is None
                or (sa, resolution.source) != (emitted["sa"], emitted["source"])
                or (progress["confirmed"].get(sa) and not emitted["confirmed"])
                # every doubling: the bytes of all early versions stay linear in the actions
                or (is_pair and value.sa == sa and count.bit_length() > before.bit_length()))
            if due:
                doc = self._emit(alert_id, resolution, map(unpack, pairs.read()), progress)
                if doc is not None:
                    yield False, doc
        progress_state.write(progress)

    def _emit(self, alert_id, resolution, pairs, progress, final: bool = False):
        emitted = progress["emitted"]
        doc = final_incident(alert_id, resolution, pairs)
        if doc is None:
            return None
        inc = doc["kubehunt"]["incident"]
        state = {"sa": resolution.sa, "source": resolution.source, "confirmed": inc["confirmed"],
                 "count": inc["action_count"]}
        version = inc["version"]
        if emitted is not None:
            same = all(emitted[k] == state[k] for k in state)
            if same and not final:
                return None
            # Never go back (e.g. after an SA change); the identical final content keeps its version.
            version = emitted["version"] if same else max(version, emitted["version"] + 1)
        inc["version"] = version
        progress["emitted"] = {**state, "version": version}
        return doc

    @on_timer(FINAL)
    def finish(self, alert_id=beam.DoFn.KeyParam, resolution_state=beam.DoFn.StateParam(RESOLUTION),
               pairs=beam.DoFn.StateParam(PAIRS), progress_state=beam.DoFn.StateParam(PROGRESS)):
        resolution = resolution_state.read()
        if resolution is not None:
            progress = (progress_state.read() if self._early else None) or _new_progress()
            doc = self._emit(alert_id, resolution, map(unpack, pairs.read()), progress, final=True)
            if doc is not None:
                yield True, doc
        resolution_state.clear()
        pairs.clear()
        if self._early:
            progress_state.clear()


class CountIncidentsFn(beam.DoFn):
    """Counters for the run summary, counted here (not in timers: lost on some runners); yields docs."""

    def setup(self):
        self._total = Metrics.counter(METRICS_NAMESPACE, "incidents.total")
        self._confirmed = Metrics.counter(METRICS_NAMESPACE, "incidents.confirmed")
        self._sources = {s: Metrics.counter(METRICS_NAMESPACE, f"incidents.sa_source.{s}") for s in SA_SOURCES}

    def process(self, element):
        final, doc = element
        if final:
            inc = doc["kubehunt"]["incident"]
            self._total.inc()
            if inc["confirmed"]:
                self._confirmed.inc()
            self._sources[inc["sa_source"]].inc()
        yield doc


class CountUnresolvedFn(beam.DoFn):
    def setup(self):
        self._unresolved = Metrics.counter(METRICS_NAMESPACE, "alerts.unresolved")

    def process(self, alert_id):
        self._unresolved.inc()
        return []
