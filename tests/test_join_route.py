"""RouteCorrelationElementsFn batches a bundle's actions per (SA, bucket), in batches of at most BATCH:
a bundle as large as a whole input (the local runner's) never holds more than one batch per key."""
from __future__ import annotations

from transforms.correlate import Action, RouteCorrelationElementsFn

SA = "system:serviceaccount:data:crawler"


def _actions(n: int, sa: str = SA, t0: int = 0) -> list[Action]:
    return [Action(sa, t0 + i, f"e{i}", "get", "secrets", (), True) for i in range(n)]


def _route(elements, bucket_ms: int = 10**9):
    fn = RouteCorrelationElementsFn(bucket_ms)
    fn.start_bundle()
    out = [o for e in elements for o in (fn.process(e) or ())]
    during = len(out)
    out += list(fn.finish_bundle())
    return out, during


def test_a_large_bundle_is_sent_in_bounded_batches_holding_every_action_once():
    n = 2 * RouteCorrelationElementsFn.BATCH + 7
    out, during = _route(_actions(n))
    batches = [o.value.value[1].items for o in out]          # TaggedOutput(WindowedValue((key, Actions)))
    assert during == 2                                         # two full batches left before the bundle ended
    assert [len(b) for b in batches] == [RouteCorrelationElementsFn.BATCH] * 2 + [7]
    assert [a.event_id for b in batches for a in b] == [f"e{i}" for i in range(n)]
    # each batch's element time is its earliest action's
    assert [o.value.timestamp.micros // 1000 for o in out] == [0, RouteCorrelationElementsFn.BATCH,
                                                               2 * RouteCorrelationElementsFn.BATCH]


def test_batches_are_per_service_account_and_bucket():
    other = "system:serviceaccount:web:api"
    out, _ = _route(_actions(3) + _actions(2, other) + _actions(2, SA, t0=10_000), bucket_ms=10_000)
    keys = sorted((o.value.value[0], len(o.value.value[1].items)) for o in out)
    assert keys == [((SA, 0), 3), ((SA, 1), 2), ((other, 0), 2)]
