"""Real faults from a real node: it is stopped in the middle of a run and started again, and its own
write queue rejects bulk requests with 429s. Both use a second Elasticsearch instance of the
project's script (port 9260, instance `h6outage`, write pool of 1 thread with a 1-slot queue),
never the shared node on 9200. Starting it takes ~15-25 s, restarting it mid-run as long again.
"""
from __future__ import annotations

import threading
import time

import apache_beam as beam
import pytest

from pipeline.summary import counters_from_result
from tests.es_helpers import ScriptNode, audit_items, books_balance, chunks, ids_in, run_sink, settings_for
from transforms.elasticsearch import WriteToElasticsearch

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]

URL = "http://127.0.0.1:9260"
ENV = {"KUBEHUNT_ES_PORT": "9260", "KUBEHUNT_ES_INSTANCE": "h6outage", "KUBEHUNT_ES_HEAP": "512m",
       "KUBEHUNT_ES_EXTRA_CONFIG": "thread_pool.write.size: 1\nthread_pool.write.queue_size: 1"}


NODE = ScriptNode(ENV)
_script = NODE.run


@pytest.fixture(scope="module")
def own_node():
    from elasticsearch import Elasticsearch

    with NODE.running():
        client = Elasticsearch(URL, request_timeout=60)
        yield client
        client.close()


class ThrottleFn(beam.DoFn):
    """Pass chunks through slowly, so that the run is still writing when the node goes away."""

    def __init__(self, seconds: float):
        self._seconds = seconds

    def process(self, chunk):
        time.sleep(self._seconds)
        yield chunk


def test_the_node_stopped_mid_run_and_started_again_loses_and_duplicates_nothing(own_node, unique_name):
    settings = settings_for(URL, unique_name, batch_docs=100, concurrency=1, retry_max=2.0, retry_deadline=240.0)
    index = settings.index_for("audit")
    own_node.indices.create(index=index, settings={"number_of_shards": 1})
    items = audit_items(20_000)
    timeline: dict[str, float | int] = {}

    def outage():
        # Stop the node once the run has started writing; start it again right away.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if own_node.count(index=index)["count"] > 0:
                    break
            except Exception:  # noqa: BLE001 - index not refreshed/ready yet: keep polling
                pass
            time.sleep(0.2)
        timeline["count_at_stop"] = own_node.count(index=index)["count"]
        timeline["stop"] = time.monotonic()
        timeline["stop_rc"] = _script("stop").returncode
        time.sleep(1)
        timeline["start_rc"] = _script("start").returncode
        timeline["started"] = time.monotonic()

    thread = threading.Thread(target=outage)
    p = beam.Pipeline()
    (p | beam.Create(chunks(items, 100), reshuffle=False)
       | beam.ParDo(ThrottleFn(0.05))
       | WriteToElasticsearch(settings))
    thread.start()
    result = p.run()
    result.wait_until_finish()
    finished = time.monotonic()
    thread.join()
    counters = counters_from_result(result)

    assert timeline["stop_rc"] == 0 and timeline["start_rc"] == 0
    assert 0 < timeline["count_at_stop"] < len(items)           # the node went away mid-run ...
    assert timeline["stop"] < finished and timeline["started"] < finished   # ... and the run outlived the outage
    assert counters["es.retries"] > 0
    assert books_balance(counters, "audit")
    assert counters["written.audit"] + counters.get("present.audit", 0) == len(items)
    ids = ids_in(own_node, index)
    assert len(ids) == len(items) and sorted(ids) == sorted(i[1] for i in items)
    own_node.indices.delete(index=index)


def test_a_tiny_write_queue_node_429s_lose_nothing(own_node, unique_name):
    """The node's own back-pressure: 1 write thread, 1 queue slot, 4 shards and 6 concurrent bulk
    requests make it answer 429 (es_rejected_execution_exception) again and again."""
    settings = settings_for(URL, unique_name, batch_docs=100, concurrency=6, retry_initial=0.02, retry_max=0.3)
    index = settings.index_for("audit")
    own_node.indices.create(index=index, settings={"number_of_shards": 4})
    items = audit_items(6000)
    counters = run_sink(settings, chunks(items, 600))
    assert counters["es.retries"] > 0           # the node really did reject
    assert books_balance(counters, "audit")
    ids = ids_in(own_node, index)
    assert len(ids) == len(items) and sorted(ids) == sorted(i[1] for i in items)
    own_node.indices.delete(index=index)
