"""One match per request: stages of one audit request (same auditID) are tagged once, on the latest stage.

Runs the pipeline's own per-chunk stage (`ProcessChunkFn`, the DoFn `kubehunt run` uses) over lines made
from a hunt's own example, logged at several stages as real API servers do.
"""
from __future__ import annotations

import apache_beam as beam
import orjson

from transforms.hunts import load_hunts
from transforms.process import ProcessChunkFn, ProcessSettings

RBAC = next(h for h in load_hunts() if h.id == "rbac-modification")


def _stages(audit_id: str, *stages: str) -> list[bytes]:
    base = dict(RBAC.example_events("match")[0], auditID=audit_id)
    return [orjson.dumps(dict(base, stage=s)) for s in stages]


def _run(lines: list[bytes]) -> list[dict]:
    fn = ProcessChunkFn(ProcessSettings(correlate=False))
    fn.setup()
    docs = []
    for element in fn.process(("audit", "test.log", 1, lines)):
        if not isinstance(element, beam.pvalue.TaggedOutput):
            docs += [orjson.loads(item.body) for item in element]
    return docs


def _tagged(docs, hunt_id=RBAC.id) -> list[tuple[str, str]]:
    return [(d["kubernetes"]["audit"]["auditID"], d["kubernetes"]["audit"]["stage"]) for d in docs
            if hunt_id in d.get("kubehunt", {}).get("hunts", [])]


def test_a_request_logged_at_two_stages_is_tagged_once_on_the_final_stage():
    docs = _run(_stages("r-1", "RequestReceived", "ResponseComplete"))
    assert len(docs) == 2, "both stages are still written"
    assert _tagged(docs) == [("r-1", "ResponseComplete")]
    received = next(d for d in docs if d["kubernetes"]["audit"]["stage"] == "RequestReceived")
    assert "kubehunt" not in received and "threat" not in received and "risk_score" not in received["event"]


def test_a_request_without_its_final_stage_keeps_its_earliest_match():
    docs = _run(_stages("r-2", "RequestReceived") + _stages("r-3", "RequestReceived", "ResponseStarted"))
    assert sorted(_tagged(docs)) == [("r-2", "RequestReceived"), ("r-3", "ResponseStarted")]


def test_every_hunt_counts_each_request_once_and_distinct_requests_apart():
    # The examples are cluster-admin bindings: both hunts match each request, once.
    binding = next(h for h in load_hunts() if h.id == "cluster-admin-binding").example_events("match")[0]
    lines = [orjson.dumps(dict(binding, auditID="b-1", stage="ResponseComplete"))]
    lines += _stages("r-4", "RequestReceived", "ResponseComplete") + _stages("r-5", "ResponseComplete")
    docs = _run(lines)
    assert sorted(_tagged(docs)) == [("b-1", "ResponseComplete"), ("r-4", "ResponseComplete"),
                                     ("r-5", "ResponseComplete")]
    assert sorted(_tagged(docs, "cluster-admin-binding")) == sorted(_tagged(docs))
