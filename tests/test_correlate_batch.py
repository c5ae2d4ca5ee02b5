"""The batch join (``BATCH_STAGES``: GroupByKeys, transforms/correlate/batch.py) gives exactly the
incident documents of the stateful join (``STAGES``) on the same bounded input, and both the
brute-force oracle's answer, also when a window spans several join buckets."""
from __future__ import annotations

import glob
import json
from datetime import timedelta

import apache_beam as beam
import orjson
import pytest

from tests.builders.scenario import random_records
from tests.helpers import ecs_docs, elements_of, latest, summary
from tests.test_correlate_scenario import oracle
from transforms.correlate import CorrelateByServiceAccount

WINDOW = timedelta(minutes=30)


def _incidents(tmp_path, name: str, elements, pods: str, **join) -> dict[str, dict]:
    """The final incident documents of one bounded run, by id (early versions, if any, dropped)."""
    out = tmp_path / name
    with beam.Pipeline() as p:
        (p
         | beam.Create(elements)
         | CorrelateByServiceAccount(WINDOW, timedelta(minutes=10), pods_file=pods, **join)
         | beam.Map(lambda doc: orjson.dumps(doc).decode())
         | beam.io.WriteToText(str(out)))
    return latest([json.loads(line) for f in glob.glob(f"{out}*") for line in open(f)])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_batch_join_gives_the_stateful_joins_documents_and_the_oracles_answer(seed, tmp_path):
    audit, falco, inventory = random_records(seed)
    docs = ecs_docs(audit, falco)
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps(inventory))
    elements = elements_of(docs)
    grouped = _incidents(tmp_path, "grouped", elements, str(pods))
    stateful = _incidents(tmp_path, "stateful", elements, str(pods), early_updates=True)
    assert len(grouped) >= 5
    assert grouped == stateful                      # whole documents, versions included
    assert sorted(summary(d) for d in grouped.values()) == oracle(docs, inventory)


def test_a_window_spanning_several_buckets_finds_every_action(tmp_path):
    # bucket = window / 3: an alert's window reaches three buckets after its own (ShareActionsFn).
    audit, falco, inventory = random_records(5)
    docs = ecs_docs(audit, falco)
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps(inventory))
    grouped = _incidents(tmp_path, "small_buckets", elements_of(docs), str(pods), bucket=timedelta(minutes=10))
    assert len(grouped) >= 5
    assert sorted(summary(d) for d in grouped.values()) == oracle(docs, inventory)


def test_incidents_of_one_group_share_action_entries_without_changing_them():
    """JoinAndAssembleFn makes each action's entry once for all the incidents of its group; every
    incident equals the one built alone (``final_incident`` without sharing), also when an action's
    field is an unhashable client value (a dict for a verb)."""
    from transforms.correlate.batch import JoinAndAssembleFn
    from transforms.correlate.incident import final_incident
    from transforms.correlate.messages import Action, Actions, Pair, Resolution

    sa, t0, window = "system:serviceaccount:ns:sa", 1_700_000_000_000, 30 * 60_000
    actions = [Action(sa, t0 + i * 61_000, f"id-{i}", {"not": "a verb"} if i == 3 else "get", "secrets",
                      ("secret-access-unexpected-sa",), i % 5 == 0) for i in range(60)]
    alerts = {f"alert-{k}": Resolution(1, sa, "pods", 3, "ns", "pod", t0 + k * 7 * 60_000, "Terminal shell")
              for k in range(4)}
    element = ((sa, 0), [Actions.of(actions[:30]), *alerts.items(), Actions.of(actions[30:])])
    got = {doc["event"]["id"]: doc for final, doc in JoinAndAssembleFn(window).process(element)}
    expected = {}
    for alert_id, res in alerts.items():
        hits = [a for a in actions if res.t_ms <= a.t_ms <= res.t_ms + window]
        doc = final_incident(alert_id, res, [Pair(sa, hits)])
        expected[doc["event"]["id"]] = doc
    assert len(got) == 4 and orjson.dumps(got, option=orjson.OPT_SORT_KEYS) == orjson.dumps(expected, option=orjson.OPT_SORT_KEYS)
    shared = {id(entry) for doc in got.values() for entry in doc["kubehunt"]["incident"]["actions"]}
    listed = sum(len(doc["kubehunt"]["incident"]["actions"]) for doc in got.values())
    assert len(shared) == len({a.event_id for a in actions if any(
        r.t_ms <= a.t_ms <= r.t_ms + window for r in alerts.values())}) < listed
