"""Assemble the kubehunt graph: read -> parse/normalise/tag -> sinks, and -> correlate -> sink.

``build`` only wires named composites from ``transforms``; every step has a unique readable label.

The shape is the memory design (docs/architecture.md): a runner materialises a PCollection that
crosses a stage boundary (the local FnApiRunner holds it whole), so the documents never cross one.
Each source is one fused stage from its files to its own sinks (events and dead letters); only the
join inputs leave it, and in batch only those that can join: Falco is read first, and its alerts,
a side input of the audit stage, decide which audit events can join one (``JoinScope``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from pipeline.options import RunConfig
from transforms.correlate import AlertSeen, CorrelateByServiceAccount
from transforms.elasticsearch import WriteToElasticsearch
from transforms.files import WriteNdjson
from transforms.process import ParseNormaliseTag
from transforms.records import CORRELATION, DEAD_LETTER, FALCO
from transforms.sink import ToSinkItems
from transforms.split import ReadSplitChunks


@dataclass
class Graph:
    documents: dict = field(default_factory=dict)      # source -> chunks [SinkItem, ...]
    dead_letters: list = field(default_factory=list)   # PCollections of dead-letter dicts
    incidents: beam.PCollection | None = None           # incident dicts


def _is_alert(element) -> bool:
    return type(element) is AlertSeen


def build_processing(p: beam.Pipeline, cfg: RunConfig) -> Graph:
    graph = Graph()
    given = {source for source, patterns in cfg.inputs() if patterns}
    # The join needs alerts and something to join them to.
    correlate = cfg.process.correlate and FALCO in given and len(given) > 1
    bounded = not p.options.view_as(StandardOptions).streaming
    alerts = None
    correlation = []
    # Every source of the registry; Falco first: few lines, and its alerts scope the other stages'
    # join inputs (the join's one asymmetry: alerts come from Falco).
    for source, patterns in sorted(cfg.inputs(), key=lambda item: item[0] != FALCO):
        if not patterns:
            continue
        name = source.capitalize()
        read = p | f"Read{name}" >> ReadSplitChunks(source, list(patterns), cfg.chunk_lines, cfg.max_line_bytes,
                                                    split_bytes=cfg.split_bytes, reshuffle=cfg.spread_chunks)
        processed = read["chunks"] | f"ParseNormaliseTag{name}" >> ParseNormaliseTag(
            cfg.process, alerts=alerts if source != FALCO and correlate and bounded else None)
        graph.documents[source] = processed.documents
        graph.dead_letters.extend([read[DEAD_LETTER], processed[DEAD_LETTER]])
        if correlate:
            correlation.append(processed[CORRELATION])
            if source == FALCO:
                alerts = processed[CORRELATION] | "AlertsSeen" >> beam.Filter(_is_alert)
    if correlate:
        graph.incidents = (tuple(correlation)
                           | "FlattenJoinInputs" >> beam.Flatten()
                           | "CorrelateByServiceAccount" >> CorrelateByServiceAccount(
                               window=cfg.correlation_window, allowed_lateness=cfg.allowed_lateness,
                               assume_default_sa=cfg.assume_default_sa, pods_file=cfg.pods))
    return graph


def build(p: beam.Pipeline, cfg: RunConfig) -> Graph:
    """The graph with its sinks: one per source and kind, each in the stage that makes its input."""
    graph = build_processing(p, cfg)

    def sink(label: str, name: str):
        if cfg.output_dir:
            return f"{label}Files" >> WriteNdjson(cfg.output_dir, name)
        return label >> WriteToElasticsearch(cfg.es)

    for source, documents in graph.documents.items():
        documents | sink(f"Write{source.capitalize()}Events", "events")
    for i, dead in enumerate(graph.dead_letters):
        (dead
         | f"DeadLettersToSinkItems{i}" >> ToSinkItems("dead_letters")
         | sink(f"WriteDeadLetters{i}", "dead-letters"))
    if graph.incidents is not None:
        (graph.incidents
         | "IncidentsToSinkItems" >> ToSinkItems("incidents")
         | sink("WriteIncidents", "incidents"))
    return graph
