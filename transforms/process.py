"""The fused per-event stage: parse -> normalise to ECS -> tag hunts -> serialise, over a chunk.

One DoFn call handles a whole chunk of lines (``transforms.read``), so Beam's per-element overhead is
paid once per ~1000 events. It emits:

- main output: a chunk ``[SinkItem(source, doc_id, doc_bytes), ...]`` ready for a sink (orjson bytes);
- ``CORRELATION``: the join inputs (``transforms.correlate.extract``); given the alerts of a bounded
  input as a side input, only those that can join (``transforms.correlate.JoinScope``), so that the
  join's shuffle holds a tiny fraction of the events;
- ``DEAD_LETTER``: one dead letter per line that could not be parsed or normalised, with the reason.

Counters: ``events.<source>`` (documents made), ``dead.parse``, ``dead.normalise``, ``hunt.<id>``.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

from transforms import correlate, hunts
from transforms.progress import ProgressWriter
from transforms.timerange import PLACES, TimeRange
from transforms.ecs import NormaliseError, Normaliser
from transforms.original import add_original
from transforms.parse import ParseError, records
from transforms.records import CORRELATION, DEAD_LETTER, METRICS_NAMESPACE, SOURCES, dead_letter
from transforms.sink import SinkItem



@dataclass(frozen=True)
class ProcessSettings:
    """Plain, picklable settings for the per-event stage (no clients, no compiled state).

    ``correlation_window_ms`` is what ``JoinScope`` needs when the stage is given the alerts."""
    hunts: hunts.HuntSettings = field(default_factory=hunts.HuntSettings)
    correlate: bool = True
    correlation_window_ms: int = 30 * 60_000
    keep_original: bool = False    # --keep-original: event.original (transforms/original.py)
    # Backfills: only events inside the range are written (transforms.timerange); None = everything.
    time_range: TimeRange | None = None
    # A directory the driver polls for progress (pipeline.progress); None or absent here = no reports.
    progress_dir: str | None = None


class ProcessChunkFn(beam.DoFn):
    """Parse, normalise, tag and serialise every line of a chunk; see the module docstring."""

    def __init__(self, settings: ProcessSettings):
        self._settings = settings

    def setup(self):
        # Compiled mappings and hunt expressions are built on the worker, once.
        self._normaliser = Normaliser()
        self._catalogue = hunts.load_catalogue(self._settings.hunts)
        self._events = {s: Metrics.counter(METRICS_NAMESPACE, f"events.{s}") for s in SOURCES}
        self._dead_counters: dict[str, object] = {}
        self._hunt_counters: dict[str, object] = {}
        self._range = self._settings.time_range
        self._outside = {(place, s): Metrics.counter(METRICS_NAMESPACE, f"outside.{place}.{s}")
                         for place in PLACES for s in SOURCES}
        # Progress for long runs: running totals in a file the driver reads (pipeline.progress).
        self._progress = ProgressWriter.maybe(self._settings.progress_dir)
        # Everything alive now (modules, compiled mappings and hunts, the runner's own objects) lives
        # as long as the worker: moving it out of the collector's generations makes the frequent
        # collections that millions of short-lived documents trigger cheaper (~4% of CPU, measured
        # with scripts/bench.py).
        gc.freeze()
        self._scope = self._scope_of = None

    def _dead_counter(self, stage: str):
        counter = self._dead_counters.get(stage)
        if counter is None:
            counter = self._dead_counters[stage] = Metrics.counter(METRICS_NAMESPACE, f"dead.{stage}")
        return counter

    def _hunt_counter(self, hunt_id: str):
        counter = self._hunt_counters.get(hunt_id)
        if counter is None:
            counter = self._hunt_counters[hunt_id] = Metrics.counter(METRICS_NAMESPACE, f"hunt.{hunt_id}")
        return counter

    def _join_scope(self, alerts):
        if alerts is None:
            return None
        if self._scope_of is not alerts:  # the side input is the same object for a whole bundle
            self._scope = correlate.JoinScope(alerts, self._settings.correlation_window_ms)
            self._scope_of = alerts
        return self._scope

    def process(self, chunk, alerts=None):
        source, origin, first, lines = chunk
        scope = self._join_scope(alerts)
        confirming = self._catalogue.confirming
        extract = (lambda doc: correlate.extract(doc, confirming)) if self._settings.correlate else None
        out = []
        to_ecs = self._normaliser.to_ecs
        tag = self._catalogue.tag
        dumps = orjson.dumps
        hunt_hits: dict[str, int] = {}
        dead = []
        correlation = []
        for offset, line in enumerate(lines):
            if not line:
                continue  # a blank line's placeholder (transforms.split keeps offsets = line numbers)
            try:
                recs = list(records(source, line))
            except ParseError as err:
                dead.append(dead_letter("parse", str(err), line, source=source, origin=origin, line=first + offset))
                continue
            for record, envelope in recs:
                try:
                    doc = to_ecs(source, record, envelope)
                except NormaliseError as err:
                    dead.append(dead_letter("normalise", str(err), record, source=source, origin=origin,
                                            line=first + offset))
                    continue
                if self._range is not None:
                    place = self._range.place(doc)
                    if place:  # outside the backfill's range: counted, never written (transforms.timerange)
                        self._outside[place, source].inc()
                        if extract is not None:
                            joined = self._range.join_only(place, doc, tag, extract)
                            correlation.extend(joined if scope is None else [e for e in joined if scope.keep(e)])
                        continue
                if self._settings.keep_original:
                    add_original(doc, line, record, len(recs) > 1)
                for hunt_id in tag(doc):
                    hunt_hits[hunt_id] = hunt_hits.get(hunt_id, 0) + 1
                if extract is not None:
                    elements = extract(doc)
                    if elements:
                        correlation.extend(elements if scope is None else [e for e in elements if scope.keep(e)])
                try:
                    body = dumps(doc)
                except TypeError as err:
                    dead.append(dead_letter("serialise", f"document not serialisable: {err}", record,
                                            source=source, origin=origin, line=first + offset))
                    continue
                out.append(SinkItem(source, doc["event"]["id"], body))
        out = self._catalogue.settle_requests(out, hunt_hits)  # one match per request (transforms.hunts.requests)
        self._events[source].inc(len(out))
        if self._progress is not None:
            self._progress.add(origin, sum(map(len, lines)), len(lines), len(out), len(dead))
        for hunt_id, count in hunt_hits.items():
            self._hunt_counter(hunt_id).inc(count)
        for letter in dead:
            self._dead_counter(letter["kubehunt"]["dead_letter"]["stage"]).inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)
        for element in correlation:
            yield beam.pvalue.TaggedOutput(CORRELATION, element)
        if out:
            yield out


class ParseNormaliseTag(beam.PTransform):
    """Chunks of lines -> chunks of serialised ECS documents (+ correlation inputs, dead letters).

    ``alerts``: a PCollection of ``correlate.AlertSeen`` holding every alert of a bounded input; when
    given, only the join inputs that can join one leave this stage (batch only: streaming has no
    complete list, and its join takes every input)."""

    def __init__(self, settings: ProcessSettings, alerts=None):
        super().__init__()
        self._settings = settings
        self._alerts = alerts

    def expand(self, chunks):
        side = () if self._alerts is None else (beam.pvalue.AsList(self._alerts),)
        return chunks | beam.ParDo(ProcessChunkFn(self._settings), *side).with_outputs(
            DEAD_LETTER, CORRELATION, main="documents")
