"""Helpers for the Elasticsearch sink tests: settings on unique indices, running the sink, reading back."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import apache_beam as beam
import pytest
import orjson

from pipeline.summary import counters_from_result
from transforms.elasticsearch import EsSettings, WriteToElasticsearch


ES_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "elasticsearch.sh"


def bulk_create(es, stream: str, docs: list[dict]) -> list[dict]:
    """Index `docs` with op_type=create; return every item that failed for another reason than 409
    (a 409 is the same event id twice: the idempotent re-delivery the ids are designed for)."""
    if not docs:
        return []
    body = b"".join(orjson.dumps({"create": {"_index": stream, "_id": d["event"]["id"]}}) + b"\n" +
                    orjson.dumps(d) + b"\n" for d in docs)
    resp = es.bulk(operations=body, refresh=True)
    return [item["create"] for item in resp["items"] if item["create"]["status"] not in (200, 201, 409)]


class ScriptNode:
    """An extra Elasticsearch instance of scripts/elasticsearch.sh (its own port and instance name,
    given as the script's environment), never the shared node."""

    def __init__(self, env: dict[str, str]):
        self._env = env

    def run(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBEHUNT_ES_URL", "KUBEHUNT_ES_SECURE")} | self._env
        return subprocess.run(["bash", str(ES_SCRIPT), *args], env=env, capture_output=True, text=True)

    @contextlib.contextmanager
    def running(self):
        """Start it (failing the test with the script's message), and stop it afterwards unless it
        was already running."""
        was_running = self.run("status").returncode == 0
        started = self.run("start")
        if started.returncode != 0:
            pytest.fail(f"could not start Elasticsearch instance {self._env}:\n{started.stderr[-3000:]}")
        try:
            yield self
        finally:
            if not was_running:
                self.run("stop")


def settings_for(url: str, name: str, **overrides) -> EsSettings:
    """Settings whose four destinations are unique plain indices (`h6-<name>-<kind>`)."""
    indices = tuple((kind, f"h6-{name}-{kind.replace('_', '-')}") for kind in ("audit", "falco", "incidents", "dead_letters"))
    base = dict(hosts=(url,), indices=indices, batch_docs=100, concurrency=2, retry_initial=0.05,
                retry_max=0.5, retry_deadline=60.0)
    base.update(overrides)
    return EsSettings(**base)


def audit_items(n: int, start: int = 0, *, prefix: str = "ev") -> list[tuple[str, str, bytes]]:
    return [("audit", f"{prefix}-{i}", orjson.dumps({"@timestamp": "2026-01-15T10:00:00Z", "event": {"id": f"{prefix}-{i}"},
                                                   "n": i, "user": {"name": f"user-{i % 7}"}}))
            for i in range(start, start + n)]


def chunks(items: list, size: int = 250) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_sink(settings: EsSettings, elements: list, *, runner_options=None) -> dict[str, int]:
    """Run `WriteToElasticsearch` over `elements` in a real Beam pipeline; return the kubehunt counters."""
    p = beam.Pipeline(options=runner_options)
    p | "Input" >> beam.Create(elements, reshuffle=False) | "Write" >> WriteToElasticsearch(settings)
    result = p.run()
    result.wait_until_finish()
    return counters_from_result(result)


def ids_in(es, index: str) -> list[str]:
    """Every `_id` in the index (refreshed first), duplicates kept if any were possible."""
    from elasticsearch.helpers import scan

    es.indices.refresh(index=index)
    return [hit["_id"] for hit in scan(es, index=index, query={"query": {"match_all": {}}}, _source=False, size=5000)]


def books_balance(counters: dict[str, int], kind: str) -> bool:
    return counters.get(f"es.received.{kind}", 0) == sum(
        counters.get(f"{what}.{kind}", 0) for what in ("written", "present", "dead.index"))


@pytest.fixture(autouse=True)
def _delete_test_indices(request):
    """Drop the `h6-<unique_name>-*` indices a test made on the shared node (modules import this)."""
    if "unique_name" not in request.fixturenames:
        yield
        return
    # Resolved before the test so that they are torn down after this fixture.
    name, es = request.getfixturevalue("unique_name"), request.getfixturevalue("es")
    yield
    es.options(ignore_status=404).indices.delete(index=f"h6-{name}-*", expand_wildcards="all")
