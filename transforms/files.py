"""The `--output-dir` sink: NDJSON files holding exactly the documents that would be indexed."""
from __future__ import annotations

import os

import apache_beam as beam
import orjson
from apache_beam import coders
from apache_beam.metrics import Metrics

from transforms.records import METRICS_NAMESPACE


class _CountAndJoinFn(beam.DoFn):
    """Count `written.<kind>` (the chunk's source for events) and serialise to NDJSON text."""

    def __init__(self, kind: str):
        self._kind = kind

    def setup(self):
        self._counters: dict = {}

    def _count(self, kind: str, n: int):
        counter = self._counters.get(kind)
        if counter is None:
            counter = self._counters[kind] = Metrics.counter(METRICS_NAMESPACE, f"written.{kind}")
        counter.inc(n)

    def process(self, element):
        if isinstance(element, list):  # a chunk of (source, id, bytes)
            self._count(element[0][0], len(element))
            yield b"\n".join(item[2] for item in element)
        else:  # a single document (dict)
            self._count(self._kind, 1)
            yield orjson.dumps(element)


class WriteNdjson(beam.PTransform):
    """Documents (chunks of serialised docs, or dicts) -> DIR/NAME-SSSSS-of-NNNNN.ndjson."""

    def __init__(self, directory: str, name: str, kind: str):
        super().__init__()
        self._prefix = os.path.join(directory, name)
        self._kind = kind

    def expand(self, docs):
        return (docs
                | "Serialise" >> beam.ParDo(_CountAndJoinFn(self._kind))
                | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".ndjson",
                                                  coder=coders.BytesCoder()))
