"""The join over a bounded input: resolve on one GroupByKey, then join and assemble on another.

A batch run has every input before the first timer fires, so the stateful stages (``resolve``,
``join.JoinWindowFn``, ``incident.AssembleIncidentFn``) end with exactly what one pass over complete
groups computes: the pod's decision from all its facts (``decide`` is a pure function of them), and
each alert's final incident from every action of its SA inside its window. Here:

1. ``ResolvePodGroupFn``, keyed by pod: each alert's ``Resolution``, sent to the join bucket of its
   SA and time (``(SA, t // bucket)``), or its id on ``UNRESOLVED``;
2. ``ShareActionsFn``: a batch of actions of bucket b also goes to the buckets before it whose
   alerts' windows reach into b (``ceil(window / bucket)`` of them);
3. ``JoinAndAssembleFn``, keyed by (SA, bucket): every alert of the bucket finds all its actions in
   the group and becomes its final incident there (``final_incident``, the streaming join's own).

No per-key state: no state reads and writes (each a request to the runner, a round trip between
processes on ``multi_processing``, and a value the SDK's state cache weighs), and no pair per
(alert, action): the shuffle holds each action at most ``1 + ceil(window / bucket)`` times, packed,
whatever the number of alerts that join it. A group holds one SA's actions of one bucket plus a
window. Flink, Spark and Dataflow spill a GroupByKey to disk.

Streaming (and ``early_updates``) keeps the stateful stages; the tests run both on the same inputs
(batch through ``beam.Create``, streaming through ``TestStream``) and compare them with each other
and with a brute-force oracle.
"""
from __future__ import annotations

import apache_beam as beam

from transforms.correlate.incident import final_incident
from transforms.correlate.messages import Actions, AlertSeen, Pair, Resolution
from transforms.correlate.resolve import UNRESOLVED, add_fact, decide


class ResolvePodGroupFn(beam.DoFn):
    """(ns, pod), its alerts and facts -> ((SA, bucket), (alert id, ``Resolution``)) per resolved alert,
    or its id on ``UNRESOLVED``: ``ResolvePodFn``'s final decision."""

    def __init__(self, window_ms: int, bucket_ms: int, assume_default: bool):
        self._window_ms, self._bucket_ms, self._assume_default = window_ms, bucket_ms, assume_default

    def process(self, element):
        (ns, pod), values = element
        facts: dict = {}
        alerts: dict = {}
        for value in values:
            if type(value) is AlertSeen:
                alerts.setdefault(value.alert_id, value)   # the same alert shipped twice counts once
            else:
                add_fact(facts, value)
        for alert_id, alert in alerts.items():
            best = decide(facts, ns, alert.t_ms, self._window_ms, self._assume_default)
            if best is None:
                yield beam.pvalue.TaggedOutput(UNRESOLVED, alert_id)
                continue
            sa, source, rank = best
            yield (sa, alert.t_ms // self._bucket_ms), (alert_id, Resolution(
                1, sa, source, rank, ns, pod, alert.t_ms, alert.rule))


class ShareActionsFn(beam.DoFn):
    """((SA, b), Actions) -> the same batch keyed by b and by each earlier bucket whose alerts' windows
    reach into b: an alert at t in bucket a needs the actions up to t + window < (a + 1) * bucket + window."""

    def __init__(self, window_ms: int, bucket_ms: int):
        self._reach = -(-window_ms // bucket_ms)   # ceil

    def process(self, element):
        (sa, bucket), batch = element
        for b in range(bucket - self._reach, bucket + 1):
            yield (sa, b), batch


class JoinAndAssembleFn(beam.DoFn):
    """(SA, bucket): its alerts' resolutions and the actions of the bucket and the window after it ->
    (True, final incident document) per alert with actions at t <= time <= t + window."""

    def __init__(self, window_ms: int):
        self._window_ms = window_ms

    def process(self, element):
        (sa, _bucket), values = element
        actions: list = []
        alerts: dict = {}
        for value in values:
            if type(value) is Actions:
                actions.extend(value.items)
            else:
                alert_id, resolution = value
                alerts.setdefault(alert_id, resolution)
        if not actions:
            return
        window = self._window_ms
        views: dict = {}   # the alerts of a group share most of their actions (incident.build_incident)
        for alert_id, resolution in alerts.items():
            a_ms = resolution.t_ms
            hits = [a for a in actions if a_ms <= a.t_ms <= a_ms + window]
            doc = final_incident(alert_id, resolution, [Pair(sa, hits)], views) if hits else None
            if doc is not None:
                yield True, doc
