"""The join's stages and their wiring: route -> resolve (``resolve``) -> interval join -> assemble
(``incident``). ``STAGES`` is the one definition of the wiring: ``CorrelateByServiceAccount`` builds
the Beam graph from it, and the streaming harness (``tests/builders/join_harness.py``, run by
``scripts/bench_correlate.py``) drives the same DoFns through the same channels. A bounded input
without early versions takes ``BATCH_STAGES`` (``batch``): the same router, then resolve, join and
assemble on two GroupByKeys instead of keyed state.

Every stateful stage runs in the global window with event-time timers only for garbage collection,
so it behaves the same on batch and streaming runners.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import apache_beam as beam
from apache_beam.coders import BytesCoder, PickleCoder
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.windowed_value import WindowedValue

from transforms.correlate.batch import JoinAndAssembleFn, ResolvePodGroupFn, ShareActionsFn
from transforms.correlate.incident import AssembleIncidentFn, CountIncidentsFn, CountUnresolvedFn
from transforms.correlate.messages import Action, Actions, AlertCopy, AlertSeen, Pair, PodFact, unpack
from transforms.correlate.resolve import UNRESOLVED, ReadPodInventoryFn, ResolvePodFn, ts


def duration_ms(duration) -> int:
    """timedelta, seconds or None -> milliseconds."""
    if duration is None:
        return 0
    if isinstance(duration, timedelta):
        return int(round(duration.total_seconds() * 1000))
    return int(round(float(duration) * 1000))


@dataclass(frozen=True)
class JoinSettings:
    """The join's settings (milliseconds). ``bucket_ms`` bounds the join state per key to one bucket
    of events; ``early``: publish partial incidents before the window closes (streaming)."""
    window_ms: int = 30 * 60_000
    lateness_ms: int = 0
    bucket_ms: int = 30 * 60_000
    assume_default_sa: bool = False
    early: bool = False


class RouteCorrelationElementsFn(beam.DoFn):
    """Give each element its event time; key alerts and facts by pod, actions by (SA, bucket).

    Pod-name claims ride on every request of a pod's SA, so a hot pod would send one fact per request;
    facts are reduced per bundle to the earliest time per (pod, source, SA) (the only thing the
    resolver keeps) before they are shuffled. Actions are batched per bundle and (SA, bucket), at
    most ``BATCH`` to a batch: the join then pays its state and timer costs once per batch, not once
    per event, and a bundle as large as a whole input (the local runner's) holds one batch per key.
    """

    POD = "pod"
    EVENTS = "events"
    BATCH = 2000

    def __init__(self, bucket_ms: int):
        self._bucket_ms = bucket_ms

    def start_bundle(self):
        self._facts: dict = {}
        self._events: dict = {}

    def process(self, element):
        kind = type(element)
        if kind is Action:
            key = (element.sa, element.t_ms // self._bucket_ms)
            batch = self._events.get(key)
            if batch is None:
                batch = self._events[key] = []
            batch.append(element)
            if len(batch) >= self.BATCH:
                del self._events[key]
                yield self._batch(key, batch)
        elif kind is AlertSeen:
            yield beam.pvalue.TaggedOutput(self.POD, TimestampedValue(((element.ns, element.pod), element),
                                                                      ts(element.t_ms)))
        elif kind is PodFact:
            key = (element.ns, element.pod, element.source, element.sa)
            seen = self._facts.get(key)
            if seen is None or element.t_ms < seen.t_ms:
                self._facts[key] = element
        else:
            raise ValueError(f"not a join input: {element!r}")

    def finish_bundle(self):
        for fact in self._facts.values():
            yield beam.pvalue.TaggedOutput(self.POD, WindowedValue(
                ((fact.ns, fact.pod), fact), ts(fact.t_ms), [GlobalWindow()]))
        # Per-element cost is the enemy: a bundle's actions for one (SA, bucket) travel as one element.
        for key, batch in self._events.items():
            yield self._batch(key, batch)
        self._facts = {}
        self._events = {}

    def _batch(self, key, batch: list):
        return beam.pvalue.TaggedOutput(self.EVENTS, WindowedValue(
            (key, Actions.of(batch)), ts(min(a.t_ms for a in batch)), [GlobalWindow()]))


class JoinWindowFn(beam.DoFn):
    """Keyed by (SA, bucket): emit (alert id, ``Pair``) for every alert/action with t <= time <= t + window.

    Symmetric: the second of the two to arrive emits the pair, so each pair is emitted exactly once.
    State per key is one bucket's actions, cleared by a timer at bucket end + window + lateness.
    """

    EVENTS = BagStateSpec("events", BytesCoder())   # packed batches (messages.pack)
    ALERTS = BagStateSpec("alerts", PickleCoder())
    GC = TimerSpec("gc", TimeDomain.WATERMARK)

    def __init__(self, window_ms: int, lateness_ms: int, bucket_ms: int):
        self._window_ms, self._lateness_ms, self._bucket_ms = window_ms, lateness_ms, bucket_ms

    def process(self, element, events=beam.DoFn.StateParam(EVENTS), alerts=beam.DoFn.StateParam(ALERTS),
                gc=beam.DoFn.TimerParam(GC)):
        (sa, bucket), value = element
        window = self._window_ms
        if type(value) is Actions:
            batch = value.items
            events.add(value.packed)
            for alert in alerts.read():
                hits = [a for a in batch if alert.t_ms <= a.t_ms <= alert.t_ms + window]
                if hits:
                    yield alert.alert_id, Pair(sa, hits)
        else:
            for known in alerts.read():
                if known.alert_id == value.alert_id:
                    return
            alerts.add(value)
            a_ms = value.t_ms
            hits = [a for blob in events.read() for a in unpack(blob) if a_ms <= a.t_ms <= a_ms + window]
            if hits:
                yield value.alert_id, Pair(sa, hits)
        # Nothing that can still join this bucket arrives after its end + window + lateness.
        gc.set(ts((bucket + 1) * self._bucket_ms + window + self._lateness_ms))

    @on_timer(GC)
    def expire(self, events=beam.DoFn.StateParam(EVENTS), alerts=beam.DoFn.StateParam(ALERTS)):
        events.clear()
        alerts.clear()


MAIN = None  # the main output's tag in ``JoinStage.outputs``


@dataclass(frozen=True)
class JoinStage:
    """One step of the join: its DoFn, the channels it reads (flattened) and the channels it fills."""
    label: str
    make: Callable[[JoinSettings], beam.DoFn]
    inputs: tuple[str, ...]
    outputs: tuple[tuple[str | None, str], ...]   # (tag or MAIN, channel)
    key_type: object = None                        # a deterministic key coder for keyed stages
    grouped: bool = False                          # the DoFn takes (key, values) from a GroupByKey


# Deterministic key coders of the keyed stages: (ns, pod), (SA, bucket), alert id.
_POD_KEY = typing.Tuple[typing.Tuple[str, str], typing.Any]
_BUCKET_KEY = typing.Tuple[typing.Tuple[str, int], typing.Any]
_ALERT_KEY = typing.Tuple[str, typing.Any]

STAGES: tuple[JoinStage, ...] = (
    JoinStage("RouteCorrelationElements", lambda s: RouteCorrelationElementsFn(s.bucket_ms),
              ("elements",), ((RouteCorrelationElementsFn.POD, "by_pod"),
                              (RouteCorrelationElementsFn.EVENTS, "actions"))),
    JoinStage("ResolvePodServiceAccount",
              lambda s: ResolvePodFn(s.window_ms, s.lateness_ms, s.bucket_ms, s.assume_default_sa),
              ("by_pod", "inventory"), ((MAIN, "alert_copies"), (ResolvePodFn.RESOLUTIONS, "resolutions"),
                                        (UNRESOLVED, "unresolved")), _POD_KEY),
    JoinStage("JoinWithinWindow", lambda s: JoinWindowFn(s.window_ms, s.lateness_ms, s.bucket_ms),
              ("alert_copies", "actions"), ((MAIN, "pairs"),), _BUCKET_KEY),
    JoinStage("AssembleIncidents", lambda s: AssembleIncidentFn(s.window_ms, s.lateness_ms, s.early),
              ("resolutions", "pairs"), ((MAIN, "versions"),), _ALERT_KEY),
)


BATCH_STAGES: tuple[JoinStage, ...] = (
    STAGES[0],
    JoinStage("ResolvePodServiceAccount",
              lambda s: ResolvePodGroupFn(s.window_ms, s.bucket_ms, s.assume_default_sa),
              ("by_pod", "inventory"), ((MAIN, "resolved"), (UNRESOLVED, "unresolved")), _POD_KEY, grouped=True),
    JoinStage("ShareActionsWithEarlierBuckets", lambda s: ShareActionsFn(s.window_ms, s.bucket_ms),
              ("actions",), ((MAIN, "shared_actions"),)),
    JoinStage("JoinAndAssembleIncidents", lambda s: JoinAndAssembleFn(s.window_ms),
              ("resolved", "shared_actions"), ((MAIN, "versions"),), _BUCKET_KEY, grouped=True),
)


def wire(stages, channels: dict, settings: JoinSettings) -> dict:
    """Apply ``stages`` to the named PCollections in ``channels``; returns every channel."""
    channels = dict(channels)
    for stage in stages:
        inputs = tuple(channels[name] for name in stage.inputs if name in channels)
        if stage.key_type is not None:
            # Typed keys give the stateful DoFns a deterministic key coder (str/int tuples), which
            # runners that group by encoded key bytes need.
            pcoll = inputs | f"{stage.label}Inputs" >> beam.Flatten().with_output_types(stage.key_type)
        else:
            (pcoll,) = inputs
        if stage.grouped:
            pcoll = pcoll | f"{stage.label}Group" >> beam.GroupByKey()
        tags = [tag for tag, _ in stage.outputs if tag is not MAIN]
        main = next((name for tag, name in stage.outputs if tag is MAIN), "main")
        out = pcoll | stage.label >> beam.ParDo(stage.make(settings)).with_outputs(*tags, main=main)
        for tag, name in stage.outputs:
            channels[name] = out[main] if tag is MAIN else out[tag]
    return channels


class CorrelateByServiceAccount(beam.PTransform):
    """Join inputs (``AlertSeen`` / ``Action`` / ``PodFact``, from ``extract``) -> incident documents.

    ``window``/``allowed_lateness``: timedelta (or seconds). ``bucket``: join bucket size (default:
    the window), bounds the join's state per key to one bucket's events. ``early_updates``: publish
    partial incidents before the window closes (default: when the pipeline is streaming); without
    them only final versions are emitted, one per incident, which is what the file sink wants.
    """

    def __init__(self, window=timedelta(minutes=30), allowed_lateness=None, assume_default_sa: bool = False,
                 pods_file: str | None = None, bucket=None, early_updates: bool | None = None):
        super().__init__()
        window_ms = duration_ms(window)
        if window_ms <= 0:
            raise ValueError("the correlation window must be positive")
        self._settings = JoinSettings(window_ms, duration_ms(allowed_lateness),
                                      duration_ms(bucket) if bucket is not None else window_ms,
                                      assume_default_sa, bool(early_updates))
        self._early = early_updates
        self._pods_file = pods_file

    @property
    def settings(self) -> JoinSettings:
        return self._settings

    def expand(self, elements):
        settings = self._settings
        if self._early is None:
            early = bool(elements.pipeline.options.view_as(StandardOptions).streaming)
            settings = JoinSettings(**{**settings.__dict__, "early": early})
        channels = {"elements": elements}
        if self._pods_file:
            channels["inventory"] = (elements.pipeline
                                     | "PodInventoryPath" >> beam.Create([self._pods_file])
                                     | "ReadPodInventory" >> beam.ParDo(ReadPodInventoryFn()))
        bounded = not elements.pipeline.options.view_as(StandardOptions).streaming
        channels = wire(BATCH_STAGES if bounded and not settings.early else STAGES, channels, settings)
        channels["unresolved"] | "CountUnresolvedAlerts" >> beam.ParDo(CountUnresolvedFn())
        return channels["versions"] | "CountIncidents" >> beam.ParDo(CountIncidentsFn())
