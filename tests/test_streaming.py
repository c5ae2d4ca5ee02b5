"""`kubehunt run --streaming`: the graph from lines to sink items under TestStream (shuffled, late
within the allowed lateness) gives the scenario's incidents and every event once; each unbounded
source builds into a runner proto; Kafka's expansion-service requirement fails fast and says so; the
sink is fed by GroupIntoBatches with a processing-time deadline (a graph check only: this runner's
TestStream clock does not drive that wall-clock timer)."""
from __future__ import annotations

import json
import socket
from datetime import timedelta

import apache_beam as beam
import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipeline import streaming
from pipeline.cli import _parser
from pipeline.options import ConfigError, RunConfig
from tests.builders.scenario import MINUTE, generate
from tests.helpers import (expected_summaries, latest, record_time, run_cli, shuffled_stream, streaming_options,
                           summary)
from transforms.ecs import to_epoch_ms

LATENESS_MS = 10 * MINUTE


def _timed_lines(scenario) -> list[tuple[int, tuple[str, bytes]]]:
    rows = [("audit", r) for r in scenario.audit] + [("falco", r) for r in scenario.falco]
    return [(to_epoch_ms(record_time(source, r)), (source, orjson.dumps(r))) for source, r in rows]


def test_streaming_graph_from_lines_to_sink_items_gives_the_batch_answer_with_late_out_of_order_data(tmp_path):
    scenario = generate(seed=5, hot_events=600)
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps(scenario.pods))
    timed = _timed_lines(scenario)
    cfg = RunConfig(pods=str(pods), correlation_window=timedelta(minutes=30),
                    allowed_lateness=timedelta(milliseconds=LATENESS_MS))
    expected = expected_summaries(scenario)
    lines_total = len(timed)

    def check(items):
        items = list(items)
        events = [i for i in items if i[0] in ("audit", "falco")]
        assert len(events) == len({i[1] for i in events}) == lines_total
        assert not [i for i in items if i[0] == "dead_letters"]
        incidents = [orjson.loads(i[2]) for i in items if i[0] == "incidents"]
        assert all(orjson.loads(i[2])["kubehunt"]["incident"]["version"] == i[3]
                   for i in items if i[0] == "incidents")
        assert sorted(summary(d) for d in latest(incidents).values()) == expected
        # Early versions were published before the final ones.
        assert len(incidents) > len(expected)

    with TestPipeline(options=streaming_options()) as p:
        lines = p | shuffled_stream(timed, LATENESS_MS, seed=3, batch=300)
        chunks = {}
        for source in ("audit", "falco"):
            chunks[source] = (lines
                              | f"Only{source}" >> beam.Filter(lambda e, s=source: e[0] == s)
                              | f"Line{source}" >> beam.Map(lambda e: e[1])
                              | f"Chunks{source}" >> streaming.LinesToChunks(source, "test", 200))
        assert_that(streaming.build_from_chunks(chunks, [], cfg), check)


def _build(argv: list[str]) -> beam_runner_api_pb2.Pipeline:
    args, extra = _parser().parse_known_args(["run", *argv])
    cfg, scfg = streaming.config_from_args(args, extra)
    p = beam.Pipeline(options=PipelineOptions(extra))
    streaming.build(p, cfg, scfg)
    proto = p.to_runner_api()
    # The runner's view: the proto must load back into a pipeline.
    beam.Pipeline.from_runner_api(proto, p.runner, p.options)
    return proto


def _labels(proto) -> set[str]:
    return {t.unique_name for t in proto.components.transforms.values()}


def _has(labels: set[str], *parts: str) -> None:
    for part in parts:
        assert any(part in label for label in labels), f"no transform named like {part}"


def test_pubsub_sources_build_an_unbounded_graph_with_the_batch_composites():
    proto = _build(["--audit-subscription", "projects/acme-1/subscriptions/audit",
                    "--falco-subscription", "projects/acme-1/subscriptions/falco", "--streaming"])
    labels = _labels(proto)
    _has(labels, "ReadAuditPubSub", "ReadFalcoPubSub", "ParseNormaliseTagAudit", "CorrelateByServiceAccount",
         "ResolvePodServiceAccount", "AssembleIncidents", "BatchWithDeadline", "WriteToElasticsearch")
    unbounded = beam_runner_api_pb2.IsBounded.UNBOUNDED
    assert any(pc.is_bounded == unbounded for pc in proto.components.pcollections.values())


def test_a_watched_directory_builds_with_match_continuously(tmp_path):
    proto = _build(["--audit", str(tmp_path / "*.log"), "--falco", str(tmp_path / "falco" / "*.json"),
                    "--watch-interval", "10s", "--streaming"])
    _has(_labels(proto), "WatchAudit0", "ReadAuditNewFiles", "WatchFalco0", "CorrelateByServiceAccount")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kafka_without_a_reachable_expansion_service_fails_fast_naming_the_requirement(capsys):
    code = run_cli("run", "--audit-topic", "audit", "--falco-topic", "falco", "--kafka-bootstrap-servers",
                   "127.0.0.1:9092", "--kafka-expansion-service", f"127.0.0.1:{_closed_port()}", "--no-setup",
                   "--streaming")
    err = capsys.readouterr().err
    assert code == 2
    assert "--audit-topic audit" in err and "expansion service" in err


@pytest.mark.parametrize("argv, needle", [
    (["--audit-topic", "a", "--streaming"], "--kafka-bootstrap-servers"),
    (["--audit-subscription", "audit", "--streaming"], "projects/PROJECT/subscriptions/NAME"),
    (["--audit-subscription", "projects/p1/subscriptions/a"], "--streaming"),
    (["--audit-subscription", "projects/p1/subscriptions/a", "--output-dir", "x", "--streaming"], "--output-dir"),
    (["--audit-topic", "a", "--audit", "x", "--kafka-bootstrap-servers", "k:1", "--streaming"], "one source"),
])
def test_streaming_configuration_errors_name_the_option(argv, needle):
    args, extra = _parser().parse_known_args(["run", *argv])
    with pytest.raises(ConfigError, match=needle.replace("/", ".")):
        streaming.config_from_args(args, extra)
