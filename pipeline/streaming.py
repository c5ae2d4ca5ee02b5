"""`kubehunt run --streaming`: the same composites as the batch graph, over unbounded sources.

Sources, per stream (audit, Falco): a Kafka topic (``--audit-topic``; Beam's ``ReadFromKafka``, a
cross-language transform: it needs a Java expansion service, see ``--kafka-expansion-service``), a
Pub/Sub subscription (``--audit-subscription``), or a watched file pattern (``--audit`` with
``--streaming``: ``fileio.MatchContinuously``; new files are read whole as they appear; tailing
appends to one file is what ``kubehunt follow`` is for).

Lines become chunks (``BatchElements``, per bundle), then the batch graph's own composites:
``ParseNormaliseTag`` -> ``CorrelateByServiceAccount`` (event time from each event, early and final
incident versions) -> ``WriteToElasticsearch``. A streaming bundle need not end on every runner, so
the sink is fed by ``GroupIntoBatches`` with ``max_buffering_duration_secs``: a batch is flushed
when full or after ``--flush-interval``, whichever is first, so every document reaches Elasticsearch
within a bounded latency. Streaming writes only to Elasticsearch (files need windowed writes; use
``kubehunt follow --output-dir`` on one machine).
"""
from __future__ import annotations

import argparse
import typing
import zlib
from dataclasses import dataclass, field

import apache_beam as beam
import orjson

from transforms.correlate import CorrelateByServiceAccount
from transforms.elasticsearch import WriteToElasticsearch
from transforms.process import ParseNormaliseTag
from transforms.read import ReadChunksFn
from transforms.records import AUDIT, CORRELATION, DEAD_LETTER, FALCO, SOURCES

KAFKA_HELP = ("Kafka needs Beam's Java expansion service for ReadFromKafka: either a running one "
              "(`java -jar beam-sdks-java-io-expansion-service-<beam version>.jar 8097`, then "
              "--kafka-expansion-service localhost:8097), or none given, and Beam starts one itself (it then "
              "needs Java 11+ and downloads that jar from Maven Central on first use)")
SINK_SHARDS = 4


@dataclass(frozen=True)
class StreamSources:
    """Where one stream's lines come from (plain data)."""
    topic: str | None = None
    subscription: str | None = None
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamingConfig:
    sources: tuple[tuple[str, StreamSources], ...] = ()
    kafka_bootstrap: str | None = None
    kafka_expansion_service: str | None = None
    kafka_timestamp_policy: str = "CreateTime"
    pubsub_timestamp_attribute: str | None = None
    watch_interval_s: float = 30.0
    flush_interval_s: float = 5.0
    extra: dict = field(default_factory=dict)

    def of(self, source: str) -> StreamSources:
        return dict(self.sources).get(source, StreamSources())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.options import _duration

    g = parser.add_argument_group("streaming (with --streaming; see README: Streaming on Flink and Dataflow)")
    for source in SOURCES:
        g.add_argument(f"--{source}-topic", metavar="TOPIC", help=f"Kafka topic of {source} lines")
        g.add_argument(f"--{source}-subscription", metavar="projects/P/subscriptions/S",
                       help=f"Pub/Sub subscription of {source} lines (a message may hold several lines)")
    g.add_argument("--kafka-bootstrap-servers", metavar="HOST:PORT,...", help="Kafka brokers (with --*-topic)")
    g.add_argument("--kafka-expansion-service", metavar="HOST:PORT", help=KAFKA_HELP)
    g.add_argument("--kafka-timestamp-policy", choices=("CreateTime", "LogAppendTime", "ProcessingTime"),
                   default="CreateTime", help="Kafka record time that drives the watermark (default CreateTime)")
    g.add_argument("--pubsub-timestamp-attribute", metavar="ATTR",
                   help="message attribute holding the event time (default: publish time)")
    g.add_argument("--watch-interval", type=_duration, default=None, metavar="DURATION",
                   help="--streaming with --audit/--falco patterns: how often to look for new files (default 30s)")
    g.add_argument("--flush-interval", type=_duration, default=None, metavar="DURATION",
                   help="longest a document waits in the streaming sink before it is sent (default 5s)")


def requested(args, beam_args: list[str]) -> bool:
    return "--streaming" in beam_args or any(
        getattr(args, f"{s}_{kind}", None) for s in SOURCES for kind in ("topic", "subscription"))


def config_from_args(args, beam_args: list[str]):
    """-> (RunConfig, StreamingConfig); configuration errors name the option."""
    from pipeline.options import ConfigError, RunConfig, es_settings_from_args, hunt_settings_from_args
    from transforms.process import ProcessSettings

    if "--streaming" not in beam_args:
        raise ConfigError("--audit-topic/--falco-topic/--*-subscription read unbounded sources: add --streaming")
    if args.output_dir:
        raise ConfigError("--output-dir with --streaming: a streaming job writes to Elasticsearch "
                          "(for files on one machine, use `kubehunt follow --output-dir`)")
    sources = []
    for source in SOURCES:
        topic, sub = getattr(args, f"{source}_topic"), getattr(args, f"{source}_subscription")
        patterns = tuple(getattr(args, source) or ())
        given = [n for n, v in ((f"--{source}-topic", topic), (f"--{source}-subscription", sub),
                                (f"--{source}", patterns)) if v]
        if len(given) > 1:
            raise ConfigError(f"{' and '.join(given)}: give one source per stream")
        if given:
            if sub and not sub.startswith("projects/") or sub and "/subscriptions/" not in sub:
                raise ConfigError(f"--{source}-subscription must be projects/PROJECT/subscriptions/NAME")
            sources.append((source, StreamSources(topic, sub, patterns)))
    if not sources:
        raise ConfigError("nothing to read: give --audit-topic/--audit-subscription/--audit and/or the falco ones")
    if any(s.topic for _, s in sources) and not args.kafka_bootstrap_servers:
        raise ConfigError("--audit-topic/--falco-topic need --kafka-bootstrap-servers")
    if args.pods:
        from transforms.correlate import InventoryError, inventory_service_accounts
        try:
            inventory_service_accounts(args.pods)
        except InventoryError as err:
            raise ConfigError(f"--pods {err}") from None
    cfg = RunConfig(
        audit=tuple(dict(sources).get(AUDIT, StreamSources()).patterns),
        falco=tuple(dict(sources).get(FALCO, StreamSources()).patterns), pods=args.pods,
        es=es_settings_from_args(args),
        process=ProcessSettings(hunts=hunt_settings_from_args(args), correlate=args.correlate),
        chunk_lines=args.chunk_lines, max_line_bytes=args.max_line_bytes,
        correlation_window=args.correlation_window, allowed_lateness=args.allowed_lateness,
        assume_default_sa=args.assume_default_sa, setup_destinations=args.setup_destinations,
        summary_json=args.summary_json)
    scfg = StreamingConfig(
        sources=tuple(sources), kafka_bootstrap=args.kafka_bootstrap_servers,
        kafka_expansion_service=args.kafka_expansion_service, kafka_timestamp_policy=args.kafka_timestamp_policy,
        pubsub_timestamp_attribute=args.pubsub_timestamp_attribute,
        watch_interval_s=args.watch_interval.total_seconds() if args.watch_interval else 30.0,
        flush_interval_s=args.flush_interval.total_seconds() if args.flush_interval else 5.0)
    return cfg, scfg


# ---------------------------------------------------------------------------------------------
# Graph


def _split_lines(message: bytes):
    # A Kafka record or Pub/Sub message holds one line, or a few (NDJSON batches from a shipper).
    for line in message.splitlines():
        if line.strip():
            yield line


class LinesToChunks(beam.PTransform):
    """Unbounded lines -> the chunks ``ParseNormaliseTag`` takes (batched per bundle: no added latency)."""

    def __init__(self, source: str, origin: str, chunk_lines: int):
        super().__init__()
        self._source, self._origin, self._chunk_lines = source, origin, chunk_lines

    def expand(self, lines):
        source, origin = self._source, self._origin
        return (lines
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._chunk_lines)
                | "ToChunk" >> beam.Map(lambda batch: (source, origin, 0, list(batch))))


def read_source(p, source: str, where: StreamSources, scfg: StreamingConfig, cfg) -> tuple:
    """-> (chunks, dead letters or None) of one stream."""
    name = source.capitalize()
    if where.topic:
        from apache_beam.io.kafka import ReadFromKafka
        from pipeline.options import ConfigError
        try:
            records = p | f"Read{name}Kafka" >> ReadFromKafka(
                consumer_config={"bootstrap.servers": scfg.kafka_bootstrap, "auto.offset.reset": "earliest",
                                 "group.id": f"kubehunt-{source}"},
                topics=[where.topic], timestamp_policy=scfg.kafka_timestamp_policy,
                commit_offset_in_finalize=True, expansion_service=scfg.kafka_expansion_service)
        except Exception as err:  # noqa: BLE001 - any expansion failure: say what is needed
            raise ConfigError(f"--{source}-topic {where.topic}: cannot expand ReadFromKafka "
                              f"({type(err).__name__}). {KAFKA_HELP}") from None
        lines = records | f"{name}KafkaLines" >> beam.FlatMap(lambda kv: _split_lines(kv[1]))
        origin = f"kafka:{where.topic}"
    elif where.subscription:
        lines = (p | f"Read{name}PubSub" >> beam.io.ReadFromPubSub(
                    subscription=where.subscription, timestamp_attribute=scfg.pubsub_timestamp_attribute)
                 | f"{name}PubSubLines" >> beam.FlatMap(_split_lines))
        origin = f"pubsub:{where.subscription}"
    else:
        from apache_beam.io import fileio
        paths = [p | f"Watch{name}{i}" >> fileio.MatchContinuously(pattern, interval=scfg.watch_interval_s)
                 for i, pattern in enumerate(where.patterns)]
        matched = paths[0] if len(paths) == 1 else tuple(paths) | f"Flatten{name}Matches" >> beam.Flatten()
        read = (matched
                | f"{name}Paths" >> beam.Map(lambda m: m.path)
                | f"Read{name}NewFiles" >> beam.ParDo(ReadChunksFn(source, cfg.chunk_lines, cfg.max_line_bytes))
                .with_outputs(DEAD_LETTER, main="chunks"))
        return read.chunks, read[DEAD_LETTER]
    return lines | f"{name}LinesToChunks" >> LinesToChunks(source, origin, cfg.chunk_lines), None


def build_from_chunks(chunks_by_source: dict, extra_dead: list, cfg) -> beam.PCollection:
    """Chunks per source -> the sink's items ``(kind, id, bytes[, version])`` (one PCollection).

    Everything the batch graph does between reading and the sink, with the same composites; the
    TestStream test drives exactly this.
    """
    docs, dead, correlation = [], list(extra_dead), []
    for source, chunks in chunks_by_source.items():
        name = source.capitalize()
        processed = chunks | f"ParseNormaliseTag{name}" >> ParseNormaliseTag(cfg.process)
        docs.append(processed.documents | f"{name}DocumentItems" >> beam.FlatMap(lambda chunk: chunk))
        dead.append(processed[DEAD_LETTER])
        correlation.append(processed[CORRELATION])
    outputs = list(docs)
    outputs.append(tuple(dead) | "FlattenDeadLetters" >> beam.Flatten()
                   | "DeadLetterItems" >> beam.Map(lambda d: ("dead_letters", d["event"]["id"], orjson.dumps(d))))
    if cfg.process.correlate and len(chunks_by_source) == 2:
        incidents = (tuple(correlation)
                     | "FlattenCorrelationInputs" >> beam.Flatten()
                     | "CorrelateByServiceAccount" >> CorrelateByServiceAccount(
                         window=cfg.correlation_window, allowed_lateness=cfg.allowed_lateness,
                         assume_default_sa=cfg.assume_default_sa, pods_file=cfg.pods, early_updates=True))
        outputs.append(incidents | "IncidentItems" >> beam.Map(
            lambda d: ("incidents", d["event"]["id"], orjson.dumps(d), d["kubehunt"]["incident"]["version"])))
    return tuple(outputs) | "FlattenSinkItems" >> beam.Flatten()


def _shard(item) -> tuple[int, tuple]:
    return (zlib.crc32(str(item[1]).encode()) % SINK_SHARDS, item)


class FlushEvery(beam.PTransform):
    """Items -> lists of items, each released when full or ``max_wait_s`` after its first item."""

    def __init__(self, batch_docs: int, max_wait_s: float):
        super().__init__()
        self._batch_docs, self._max_wait_s = batch_docs, max_wait_s

    def expand(self, items):
        return (items
                | "Shard" >> beam.Map(_shard).with_output_types(typing.Tuple[int, typing.Any])
                | "BatchWithDeadline" >> beam.GroupIntoBatches(self._batch_docs,
                                                               max_buffering_duration_secs=self._max_wait_s)
                | "Items" >> beam.Map(lambda kv: list(kv[1])))


def build(p: beam.Pipeline, cfg, scfg: StreamingConfig) -> beam.PCollection:
    chunks, dead = {}, []
    for source, where in scfg.sources:
        chunks[source], read_dead = read_source(p, source, where, scfg, cfg)
        if read_dead is not None:
            dead.append(read_dead)
    items = build_from_chunks(chunks, dead, cfg)
    (items
     | "FlushEvery" >> FlushEvery(cfg.es.batch_docs, scfg.flush_interval_s)
     | "WriteToElasticsearch" >> WriteToElasticsearch(cfg.es))
    return items


def cmd_run(args, beam_args: list[str]) -> int:
    import logging

    from pipeline.options import beam_options

    cfg, scfg = config_from_args(args, beam_args)
    options = beam_options(beam_args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, cfg, scfg)  # first: a source that cannot be built is a configuration error
    if cfg.setup_destinations:
        from pipeline.setup import ensure_destinations
        ensure_destinations(cfg.es)
    logging.getLogger("kubehunt").info("kubehunt run --streaming: %s -> Elasticsearch %s",
                                       [s for s, _ in scfg.sources], ", ".join(cfg.es.hosts))
    result = pipeline.run()
    result.wait_until_finish()  # a streaming job runs until cancelled (or drained, on Dataflow)
    return 0
