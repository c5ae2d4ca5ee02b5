"""Helpers shared by tests: run the CLI in-process, read what the file sink wrote, and the incident
builders and checks of the join's tests (batch, TestStream, follow): ECS documents and join inputs from
raw records, incident summaries, the latest version per incident, a shuffled late-arriving TestStream."""
from __future__ import annotations

import glob
import json
import os
import random
from pathlib import Path

import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from pipeline.cli import main
from tests.builders.scenario import WINDOW_MS

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "data" / "demo"


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def read_ndjson(directory: str | os.PathLike, name: str) -> list[dict]:
    docs = []
    for path in sorted(glob.glob(os.path.join(str(directory), f"{name}*.ndjson"))):
        with open(path, "rb") as fh:
            docs.extend(orjson.loads(line) for line in fh if line.strip())
    return docs


def run_to_dir(tmp_path: Path, *args: str) -> tuple[int, dict, Path]:
    """Run `kubehunt run ... --output-dir` and return (exit code, summary dict, output dir)."""
    out = tmp_path / "out"
    summary = tmp_path / "summary.json"
    code = run_cli("run", *args, "--output-dir", out, "--summary-json", summary)
    return code, json.loads(summary.read_text()) if summary.exists() else {}, out


def normalise_lines(source: str, lines) -> tuple[list[dict], list[tuple[bytes, str, str]]]:
    """Lines -> (ECS documents, dead letters as (line, stage, reason)); every line is one or the other
    (an EventList line may give several documents)."""
    from transforms.ecs import NormaliseError, Normaliser
    from transforms.parse import ParseError, records

    normaliser = Normaliser()
    docs, dead = [], []
    for line in lines:
        try:
            recs = list(records(source, line))
        except ParseError as err:
            dead.append((line, "parse", str(err)))
            continue
        for record, envelope in recs:
            try:
                docs.append(normaliser.to_ecs(source, record, envelope))
            except NormaliseError as err:
                dead.append((line, "normalise", str(err)))
    return docs, dead


# ---------------------------------------------------------------------------------------------
# incidents: documents, join inputs, summaries, streams


def ecs_docs(audit: list[dict], falco: list[dict]) -> list[dict]:
    """Raw records -> tagged ECS documents, as the pipeline's hot loop makes them."""
    from transforms import hunts
    from transforms.ecs import Normaliser

    normaliser = Normaliser()
    catalogue = hunts.load_catalogue(hunts.HuntSettings())
    docs = []
    for source, records in (("audit", audit), ("falco", falco)):
        for record in records:
            doc = normaliser.to_ecs(source, record)
            catalogue.tag(doc)
            docs.append(doc)
    return docs


def elements_of(docs: list[dict]) -> list:
    """The join inputs of ECS documents."""
    from transforms import correlate

    return [e for doc in docs for e in correlate.extract(doc)]


def record_time(source: str, record: dict) -> str:
    """A raw record's own time: an audit event's stageTimestamp, a Falco alert's time."""
    return record["stageTimestamp"] if source == "audit" else record["time"]


def summary(doc: dict) -> tuple:
    inc = doc["kubehunt"]["incident"]
    return (inc["alert"], inc["service_account"], inc["sa_source"], tuple(inc["audit_event_ids"]), inc["confirmed"])


def latest(docs: list[dict]) -> dict[str, dict]:
    """One document per incident id: the highest version (what the versioned sink keeps)."""
    out: dict[str, dict] = {}
    for doc in docs:
        known = out.get(doc["event"]["id"])
        if known is None or doc["kubehunt"]["incident"]["version"] > known["kubehunt"]["incident"]["version"]:
            out[doc["event"]["id"]] = doc
    return out


def check_versions(docs: list[dict]) -> None:
    """Versions only move forward: per incident, distinct contents have distinct versions and the highest
    version is the most complete one."""
    by_id: dict[str, list] = {}
    for doc in docs:
        by_id.setdefault(doc["event"]["id"], []).append(doc)
    for incident_id, versions in by_id.items():
        seen: dict[int, tuple] = {}
        for doc in versions:
            v = doc["kubehunt"]["incident"]["version"]
            assert seen.setdefault(v, summary(doc)) == summary(doc), f"{incident_id}: two contents with version {v}"
        top = max(versions, key=lambda d: d["kubehunt"]["incident"]["version"])
        assert top["kubehunt"]["incident"]["action_count"] == max(
            d["kubehunt"]["incident"]["action_count"] for d in versions)


def expected_summaries(scenario, assume_default: bool = False) -> list[tuple]:
    expected = dict(scenario.expected)
    if assume_default:
        expected.update(scenario.with_default_sa)
    return sorted((alert, e.service_account, e.sa_source, e.audit_event_ids, e.confirmed)
                  for alert, e in expected.items())


def matches_latest(expected: list[tuple], *, early: bool = False):
    def check(docs):
        docs = list(docs)
        check_versions(docs)
        got = sorted(summary(d) for d in latest(docs).values())
        assert got == expected
        if not early:
            assert len(docs) == len(expected), "batch emits exactly one (final) document per incident"
    return check


def time_of(element) -> int:
    return element.t_ms


def timed(elements: list) -> list[tuple[int, object]]:
    """(event time in ms, element) of join inputs, for ``shuffled_stream``."""
    return [(time_of(e), e) for e in elements]


def shuffled_stream(timed_elements: list[tuple[int, object]], lateness_ms: int, seed: int,
                    batch: int = 400) -> TestStream:
    """Arrival order shuffled; about a fifth of the elements arrive up to `lateness` after their time,
    and the watermark runs as far ahead as the allowed lateness permits (so those are really late).
    `timed_elements`: (event time in ms, element)."""
    rng = random.Random(seed)
    arrival = sorted(timed_elements, key=lambda te: te[0] + (rng.randrange(lateness_ms) if rng.random() < 0.2
                                                              else 0) + rng.randrange(1000))
    stream = TestStream()
    watermark = None
    for start in range(0, len(arrival), batch):
        chunk = arrival[start:start + batch]
        rng.shuffle(chunk)
        stream.add_elements([TimestampedValue(e, t / 1000) for t, e in chunk])
        remaining = arrival[start + batch:]
        if remaining:
            # Every element still to come must be within the allowed lateness: watermark <= t + lateness.
            mark = min(t for t, _ in remaining) + lateness_ms - 1
            if watermark is None or mark > watermark:
                watermark = mark
                stream.advance_watermark_to(mark / 1000)
    # Past every deadline before +infinity (timer output at the jump to +inf can be lost on this runner).
    end = max(t for t, _ in timed_elements) + 10 * WINDOW_MS + 10 * lateness_ms
    return stream.advance_watermark_to(end / 1000).advance_watermark_to_infinity()


def streaming_options() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options
