"""WriteToElasticsearch against the real node: exactly-once effect, dead letters, retries, versions.

Faults the node cannot produce on demand (a stream of 429s, a lost response, an outage window) come
from tests/faultproxy.py, a proxy in front of the real node that forwards everything else; the real
stop/start of a node is in tests/test_es_outage.py.
"""
from __future__ import annotations

import pickle
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.es_helpers import _delete_test_indices, audit_items, books_balance, chunks, ids_in, run_sink, settings_for
from tests.faultproxy import FaultProxy
from transforms.elasticsearch import BulkWriteFn, EsWriteError

pytestmark = pytest.mark.elasticsearch


def test_every_document_is_indexed_once_and_the_books_balance(es_url, es, unique_name):
    settings = settings_for(es_url, unique_name, batch_docs=97, batch_bytes=64 * 1024)
    items = audit_items(3000)
    counters = run_sink(settings, chunks(items, 333))
    ids = ids_in(es, settings.index_for("audit"))
    assert sorted(ids) == sorted(i[1] for i in items)
    assert counters["written.audit"] == 3000 and counters.get("present.audit", 0) == 0
    assert books_balance(counters, "audit")


def test_batches_are_cut_by_bytes_as_well_as_by_count(es_url, es, unique_name):
    # 40 documents of ~10 KB with a 32 KB budget: 3 per request (a 4th would exceed it), so 14 requests.
    settings = settings_for(es_url, unique_name, batch_docs=1000, batch_bytes=32 * 1024)
    items = [("audit", f"big-{i}", orjson.dumps({"pad": "x" * 10_000, "i": i})) for i in range(40)]
    with FaultProxy(es_url) as proxy:
        counters = run_sink(settings_for(proxy.url, unique_name, batch_docs=1000, batch_bytes=32 * 1024), [items])
        bulk_requests = proxy.forwarded
    assert counters["written.audit"] == 40
    assert bulk_requests == 14
    assert len(ids_in(es, settings.index_for("audit"))) == 40


def test_the_same_job_twice_leaves_one_document_per_event(es_url, es, unique_name):
    settings = settings_for(es_url, unique_name)
    items = audit_items(1200)
    first = run_sink(settings, chunks(items))
    second = run_sink(settings, chunks(items))
    assert first["written.audit"] == 1200
    assert second.get("written.audit", 0) == 0 and second["present.audit"] == 1200
    assert books_balance(second, "audit")
    assert len(ids_in(es, settings.index_for("audit"))) == len({i[1] for i in items})


def test_a_bundle_retried_after_its_bulk_request_succeeded_is_not_duplicated(es_url, es, unique_name):
    """Beam re-runs a whole bundle when it fails after its writes: same DoFn lifecycle, same batch twice."""
    settings = settings_for(es_url, unique_name)
    items = audit_items(500)
    fn = BulkWriteFn(settings)
    fn.setup()
    try:
        for _attempt in range(2):
            fn.start_bundle()
            for chunk in chunks(items, 120):
                fn.process(chunk)
            fn.finish_bundle()
    finally:
        fn.teardown()
    assert sorted(ids_in(es, settings.index_for("audit"))) == sorted(i[1] for i in items)


def test_a_lost_bulk_response_is_resent_without_duplicates(es_url, es, unique_name):
    """Proxy fault (the node cannot lose a response on demand): the node executes the bulk request,
    then the client's connection is cut before the response; the sink re-sends, and the 409s count
    as already present."""
    items = audit_items(800)
    with FaultProxy(es_url) as proxy:
        proxy.drop_bulk_responses(3)
        settings = settings_for(proxy.url, unique_name)
        counters = run_sink(settings, chunks(items, 200))
        assert proxy.injected["drop"] == 3
    assert counters["written.audit"] + counters["present.audit"] == 800
    assert counters["present.audit"] >= 100          # at least one dropped batch was re-sent
    assert counters["es.retries"] >= 300
    assert books_balance(counters, "audit")
    assert sorted(ids_in(es, settings.index_for("audit"))) == sorted(i[1] for i in items)


def test_a_stream_of_429s_completes_with_no_loss_and_no_duplicate(es_url, es, unique_name):
    """Proxy fault: 25 whole-request 429s, then 6 responses where every 2nd item is reported as
    rejected (429) although the node indexed it; the sink retries only those items."""
    items = audit_items(2000)
    with FaultProxy(es_url) as proxy:
        proxy.reject_bulk(25)
        proxy.item_429(6)
        settings = settings_for(proxy.url, unique_name)
        counters = run_sink(settings, chunks(items, 250))
        assert proxy.pending_faults() == 0
    assert counters["es.retries"] >= 25 * 100 // 2
    assert counters["written.audit"] + counters["present.audit"] == 2000
    assert counters["present.audit"] > 0             # item-level 429s on written documents came back as 409s
    assert books_balance(counters, "audit")
    assert sorted(ids_in(es, settings.index_for("audit"))) == sorted(i[1] for i in items)


def test_a_document_that_conflicts_with_the_mapping_is_dead_lettered_with_the_reason(es_url, es, unique_name):
    settings = settings_for(es_url, unique_name)
    from pipeline.setup import ensure_destinations

    ensure_destinations(settings)  # the dead-letter index with its own mapping
    es.indices.create(index=settings.index_for("audit"), mappings={"properties": {"n": {"type": "long"}}})
    items = audit_items(300)
    bad = ("audit", "bad-1", orjson.dumps({"n": "not a number", "event": {"id": "bad-1"}}))
    counters = run_sink(settings, [items[:150] + [bad] + items[150:]])
    assert counters["written.audit"] == 300 and counters["dead.index.audit"] == 1
    assert books_balance(counters, "audit")
    assert sorted(ids_in(es, settings.index_for("audit"))) == sorted(i[1] for i in items)
    es.indices.refresh(index=settings.index_for("dead_letters"))
    hits = es.search(index=settings.index_for("dead_letters"), query={"term": {"kubehunt.dead_letter.doc_id": "bad-1"}})
    letters = [h["_source"]["kubehunt"]["dead_letter"] for h in hits["hits"]["hits"]]
    assert len(letters) == 1
    letter = letters[0]
    assert letter["stage"] == "index" and letter["source"] == "audit"
    assert letter["origin"] == settings.index_for("audit")
    assert "document_parsing_exception" in letter["reason"] and "[n]" in letter["reason"]
    assert orjson.loads(letter["raw"]) == orjson.loads(bad[2])
    # The reason is searchable.
    found = es.count(index=settings.index_for("dead_letters"),
                     query={"match": {"kubehunt.dead_letter.reason": "failed to parse field"}})
    assert found["count"] == 1
    # A re-run dead-letters it onto the same dead letter (deterministic id), still one.
    again = run_sink(settings, [[bad]])
    assert again["dead.index.audit"] == 1
    assert len(ids_in(es, settings.index_for("dead_letters"))) == 1


def test_incident_versions_only_move_forward(es_url, es, unique_name):
    settings = settings_for(es_url, unique_name)
    doc = lambda v: orjson.dumps({"event": {"id": "inc-1"}, "kubehunt": {"incident": {"version": v}}})  # noqa: E731
    first = run_sink(settings, [[("incidents", "inc-1", doc(3), 3)]])
    stale = run_sink(settings, [[("incidents", "inc-1", doc(2), 2), ("incidents", "inc-1", doc(3), 3)]])
    newer = run_sink(settings, [[("incidents", "inc-1", doc(5), 5)]])
    assert first["written.incidents"] == 1
    assert stale["present.incidents"] == 2 and stale.get("written.incidents", 0) == 0
    assert newer["written.incidents"] == 1
    got = es.get(index=settings.index_for("incidents"), id="inc-1")
    assert got["_source"]["kubehunt"]["incident"]["version"] == 5 and got["_version"] == 5


def test_unreachable_past_the_deadline_fails_the_bundle(es_url, unique_name):
    """Proxy fault: connections are refused for longer than the retry deadline."""
    with FaultProxy(es_url) as proxy:
        proxy.refuse_for(30)
        settings = settings_for(proxy.url, unique_name, retry_deadline=1.5)
        fn = BulkWriteFn(settings)
        fn.setup()
        started = time.monotonic()
        try:
            fn.start_bundle()
            fn.process(audit_items(10))
            with pytest.raises(EsWriteError, match="still failing after 2s"):
                fn.finish_bundle()
        finally:
            fn.teardown()
        assert time.monotonic() - started < 25
        assert proxy.injected["refused"] >= 2


def test_an_outage_shorter_than_the_deadline_loses_nothing(es_url, es, unique_name):
    """Proxy fault (the shared node must not be stopped): 4 s of refused connections mid-run."""
    items = audit_items(3000)
    with FaultProxy(es_url) as proxy:
        settings = settings_for(proxy.url, unique_name, batch_docs=50, concurrency=2)
        fn = BulkWriteFn(settings)
        fn.setup()
        try:
            fn.start_bundle()
            # The outage starts after the first two batches were handed over, whatever the timing: the
            # remaining 58 batches are all submitted inside its 4 s (no timer race).
            for n, chunk in enumerate(chunks(items, 50)):
                if n == 2:
                    proxy.refuse_for(4.0)
                fn.process(chunk)
            fn.finish_bundle()
        finally:
            fn.teardown()
        assert proxy.injected["refused"] > 0
    assert sorted(ids_in(es, settings.index_for("audit"))) == sorted(i[1] for i in items)


def test_several_hosts_one_of_them_down(es_url, es, unique_name):
    settings = settings_for(es_url, unique_name)
    settings = settings.__class__(**{**settings.__dict__, "hosts": ("http://127.0.0.1:1", es_url)})
    items = audit_items(600)
    counters = run_sink(settings, chunks(items, 100))
    assert counters["written.audit"] == 600
    assert sorted(ids_in(es, settings.index_for("audit"))) == sorted(i[1] for i in items)


def test_the_dofn_pickles_without_a_client_or_secret(es_url, unique_name, monkeypatch):
    monkeypatch.setenv("KUBEHUNT_ES_PASSWORD", "pickle-secret-0xC0FFEE")
    settings = settings_for(es_url, unique_name, username="elastic")
    blob = pickle.dumps(BulkWriteFn(settings))
    assert b"pickle-secret-0xC0FFEE" not in blob
    assert b"KUBEHUNT_ES_PASSWORD" in blob   # only the variable's name travels


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


def _huge(chars: int):
    """Text of at least `chars` characters (hypothesis cannot draw such long strings directly)."""
    return st.builds(lambda t, n: (t or "x") * n, _text.filter(bool), st.just(chars)).map(lambda t: t[:chars * 2])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(letters=st.lists(st.tuples(
    st.sampled_from(["read", "parse", "normalise", "serialise", "index"]),
    st.one_of(_text, _huge(40_000)),                          # reason
    st.one_of(st.binary(max_size=2000), _text, _huge(33_000),  # raw
              st.dictionaries(_text, st.one_of(_text, st.integers(), st.none()), max_size=5)),
    _text, st.one_of(_text, _huge(5000)),                       # source, origin
    st.one_of(st.none(), st.integers(min_value=0, max_value=2**62))), min_size=1, max_size=25))
def test_the_dead_letter_index_takes_any_dead_letter(es_url, es, unique_name, letters):
    from pipeline.setup import ensure_destinations
    from transforms.elasticsearch import _BulkWriter
    from transforms.records import dead_letter

    settings = settings_for(es_url, unique_name)
    ensure_destinations(settings)
    items = []
    for stage, reason, raw, source, origin, line in letters:
        doc = dead_letter(stage, reason, raw, source=source, origin=origin, line=line)
        items.append(("dead_letters", doc["event"]["id"], orjson.dumps(doc)))
    client = settings.client()
    try:
        tally = _BulkWriter(settings, client).send(items)
    finally:
        client.close()
    assert tally.get("dead.index.dead_letters", 0) == 0
    assert tally["written.dead_letters"] + tally["present.dead_letters"] == len(items)
