"""Assemble the kubehunt graph: read -> parse/normalise/tag -> correlate -> sinks.

``build`` only wires named composites from ``transforms``; every step has a unique readable label.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

from pipeline.options import RunConfig
from transforms.correlate import CorrelateByServiceAccount
from transforms.elasticsearch import WriteToElasticsearch
from transforms.files import WriteNdjson
from transforms.process import ParseNormaliseTag
from transforms.read import ReadLineChunks
from transforms.records import AUDIT, CORRELATION, DEAD_LETTER, FALCO, METRICS_NAMESPACE


@dataclass
class Graph:
    documents: beam.PCollection      # chunks [(source, id, bytes)]
    dead_letters: beam.PCollection   # dead-letter dicts
    incidents: beam.PCollection | None  # incident dicts


def build_processing(p: beam.Pipeline, cfg: RunConfig) -> Graph:
    documents, dead, correlation = [], [], []
    for source, patterns in ((AUDIT, cfg.audit), (FALCO, cfg.falco)):
        if not patterns:
            continue
        name = source.capitalize()
        read = p | f"Read{name}" >> ReadLineChunks(source, list(patterns), cfg.chunk_lines, cfg.max_line_bytes,
                                                           reshuffle=cfg.spread_chunks)
        processed = read["chunks"] | f"ParseNormaliseTag{name}" >> ParseNormaliseTag(cfg.process)
        documents.append(processed.documents)
        dead.extend([read[DEAD_LETTER], processed[DEAD_LETTER]])
        correlation.append(processed[CORRELATION])
    docs = documents[0] if len(documents) == 1 else tuple(documents) | "FlattenDocuments" >> beam.Flatten()
    dead_letters = tuple(dead) | "FlattenDeadLetters" >> beam.Flatten()
    incidents = None
    if cfg.process.correlate and cfg.audit and cfg.falco:
        incidents = (tuple(correlation)
                     | "FlattenCorrelationInputs" >> beam.Flatten()
                     | "CorrelateByServiceAccount" >> CorrelateByServiceAccount(
                         window=cfg.correlation_window, allowed_lateness=cfg.allowed_lateness,
                         assume_default_sa=cfg.assume_default_sa, pods_file=cfg.pods))
    return Graph(docs, dead_letters, incidents)


class _ToSinkItemFn(beam.DoFn):
    """dict -> (kind, id, bytes[, version]) for the Elasticsearch sink; counts what it forwards."""

    def __init__(self, kind: str):
        self._kind = kind

    def process(self, doc):
        version = (doc.get("kubehunt", {}).get("incident") or {}).get("version")
        item = (self._kind, doc["event"]["id"], orjson.dumps(doc))
        yield item + (version,) if version is not None else item


def build(p: beam.Pipeline, cfg: RunConfig) -> Graph:
    graph = build_processing(p, cfg)
    if cfg.output_dir:
        graph.documents | "WriteEventFiles" >> WriteNdjson(cfg.output_dir, "events", "events")
        graph.dead_letters | "WriteDeadLetterFiles" >> WriteNdjson(cfg.output_dir, "dead-letters", "dead_letters")
        if graph.incidents is not None:
            graph.incidents | "WriteIncidentFiles" >> WriteNdjson(cfg.output_dir, "incidents", "incidents")
    else:
        graph.documents | "WriteEvents" >> WriteToElasticsearch(cfg.es)
        (graph.dead_letters
         | "DeadLettersToSinkItems" >> beam.ParDo(_ToSinkItemFn("dead_letters"))
         | "WriteDeadLetters" >> WriteToElasticsearch(cfg.es))
        if graph.incidents is not None:
            (graph.incidents
             | "IncidentsToSinkItems" >> beam.ParDo(_ToSinkItemFn("incidents"))
             | "WriteIncidents" >> WriteToElasticsearch(cfg.es))
    return graph
