"""Escalation chains against known ground truth (tests/builders/scenario.py) and a brute-force oracle,
in batch (TestPipeline) and in streaming (TestStream: shuffled arrival, data late within the allowed
lateness, early incident versions)."""
from __future__ import annotations

import pickle
from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue

from tests.builders.scenario import WINDOW_MS, generate, random_records
from tests.helpers import (check_versions, ecs_docs, elements_of, expected_summaries, latest, matches_latest,
                           shuffled_stream, streaming_options, summary, time_of, timed)
from transforms import correlate
from transforms.correlate import CorrelateByServiceAccount
from transforms.ecs import to_epoch_ms

WINDOW = timedelta(minutes=30)
LATENESS = timedelta(minutes=10)
LATENESS_MS = 10 * 60_000


# ---------------------------------------------------------------------------------------------
# helpers (the shared ones are in tests/helpers.py)


def run_batch(tmp_path, elements, check, *, pods_file=None, assume_default=False, metrics=False):
    """Batch run reading the elements from a file (beam.Create would pickle 100k elements into the graph)."""
    path = tmp_path / "elements.pkl"
    path.write_bytes(pickle.dumps(elements))
    p = beam.Pipeline()
    incidents = (p
                 | "Path" >> beam.Create([str(path)])
                 | "Load" >> beam.FlatMap(lambda f: pickle.loads(open(f, "rb").read()))
                 | CorrelateByServiceAccount(WINDOW, LATENESS, assume_default_sa=assume_default, pods_file=pods_file))
    assert_that(incidents, check)
    result = p.run()
    result.wait_until_finish()
    if metrics:
        return {r.key.metric.name: r.committed
                for r in result.metrics().query(MetricsFilter().with_namespace("kubehunt"))["counters"]}
    return None


# ---------------------------------------------------------------------------------------------
# the ground-truth scenario


@pytest.fixture(scope="module")
def scenario_files(tmp_path_factory):
    scenario = generate(seed=7, hot_events=100_000)
    folder = tmp_path_factory.mktemp("scenario")
    paths = scenario.write(folder)
    return scenario, paths, elements_of(ecs_docs(scenario.audit, scenario.falco))


def test_generated_scenario_gives_exactly_the_expected_incidents_in_batch(scenario_files, tmp_path):
    scenario, paths, elements = scenario_files
    counters = run_batch(tmp_path, elements, matches_latest(expected_summaries(scenario)),
                         pods_file=str(paths["pods"]), metrics=True)
    assert counters["incidents.total"] == len(scenario.expected)
    assert counters["incidents.confirmed"] == sum(e.confirmed for e in scenario.expected.values())
    assert counters["alerts.unresolved"] == len(scenario.unresolved)
    for source in ("pod_create", "pod_claim", "inventory"):
        assert counters[f"incidents.sa_source.{source}"] == sum(
            e.sa_source == source for e in scenario.expected.values())


def test_assume_default_sa_turns_the_unresolved_alert_into_an_incident(scenario_files, tmp_path):
    scenario, paths, elements = scenario_files
    counters = run_batch(tmp_path, elements, matches_latest(expected_summaries(scenario, assume_default=True)),
                         pods_file=str(paths["pods"]), assume_default=True, metrics=True)
    assert counters.get("alerts.unresolved", 0) == 0


def test_without_the_inventory_the_inventory_pod_is_unresolved(scenario_files, tmp_path):
    scenario, _, elements = scenario_files
    expected = [s for s in expected_summaries(scenario) if s[2] != "inventory"]
    counters = run_batch(tmp_path, elements, matches_latest(expected), metrics=True)
    assert counters["alerts.unresolved"] == len(scenario.unresolved) + 1


@pytest.mark.slow
def test_generated_scenario_streams_to_the_same_incidents_with_shuffled_and_late_arrival(scenario_files):
    scenario, paths, elements = scenario_files
    with TestPipeline(options=streaming_options()) as p:
        incidents = (p
                     | shuffled_stream(timed(elements), LATENESS_MS, seed=11, batch=2000)
                     | CorrelateByServiceAccount(WINDOW, LATENESS, pods_file=str(paths["pods"])))
        assert_that(incidents, matches_latest(expected_summaries(scenario), early=True))


def test_streaming_publishes_early_versions_that_only_move_forward():
    scenario = generate(seed=3, hot_events=3000)
    elements = elements_of(ecs_docs(scenario.audit, scenario.falco))
    hot_alert = max(scenario.expected, key=lambda a: len(scenario.expected[a].audit_event_ids))
    hot_count = len(scenario.expected[hot_alert].audit_event_ids)

    def check(docs):
        docs = list(docs)
        check_versions(docs)
        hot = sorted((d for d in docs if d["kubehunt"]["incident"]["alert"] == hot_alert),
                     key=lambda d: d["kubehunt"]["incident"]["version"])
        counts = [d["kubehunt"]["incident"]["action_count"] for d in hot]
        # Published with the first bundle of actions, long before the window closed (arrival follows
        # event time here, so a version holding only the window's first minutes was made before the
        # rest arrived), then on every doubling, then the final version.
        first = hot[0]["kubehunt"]["incident"]
        alert_ms = to_epoch_ms(first["alert_time"])
        assert to_epoch_ms(first["last_action_time"]) < alert_ms + WINDOW_MS // 3, first["last_action_time"]
        assert counts[-1] == hot_count and len(hot) >= 4, counts
        assert counts == sorted(counts)
        # bytes of all versions stay linear in the actions (doubling, not one version per action)
        assert sum(counts) <= 4 * hot_count

    # Arrival in event order, watermark close behind: early versions must come before the window closes.
    stream = shuffled_stream(timed(elements), 1, seed=5, batch=50)
    with TestPipeline(options=streaming_options()) as p:
        incidents = p | stream | CorrelateByServiceAccount(WINDOW, timedelta(0))
        assert_that(incidents, check)


def test_pod_create_arriving_after_the_alert_within_lateness_still_resolves_it():
    scenario = generate(seed=9, hot_events=0)
    docs = ecs_docs(scenario.audit, scenario.falco)
    elements = elements_of(docs)
    create = next(e for e in elements if isinstance(e, correlate.PodFact) and e.pod == "web-7d9f")
    alert = next(e for e in elements if isinstance(e, correlate.AlertSeen) and e.pod == "web-7d9f")
    rest = [e for e in elements if e is not create and e is not alert and time_of(e) >= alert.t_ms - 1
            and time_of(e) <= alert.t_ms + WINDOW_MS + 1]
    late_by = LATENESS_MS - 1
    stream = (TestStream()
              .add_elements([TimestampedValue(alert, alert.t_ms / 1000)])
              .add_elements([TimestampedValue(e, time_of(e) / 1000) for e in rest])
              # the watermark is now past the pod create's time by nearly the whole lateness
              .advance_watermark_to((create.t_ms + late_by) / 1000)
              .add_elements([TimestampedValue(create, create.t_ms / 1000)])
              .advance_watermark_to((alert.t_ms + 10 * WINDOW_MS) / 1000)
              .advance_watermark_to_infinity())
    expected = [s for s in expected_summaries(scenario) if s[0] == alert.alert_id]
    with TestPipeline(options=streaming_options()) as p:
        incidents = p | stream | CorrelateByServiceAccount(WINDOW, timedelta(milliseconds=LATENESS_MS))
        assert_that(incidents, matches_latest(expected, early=True))


# ---------------------------------------------------------------------------------------------
# brute-force oracle on random data


def oracle(docs: list[dict], inventory: dict, window_ms: int = WINDOW_MS) -> list[tuple]:
    """The definition, by brute force over every (alert, event) pair, written independently of the join."""
    facts = []  # (ns, pod, sa, source, time)
    actions = []  # (sa, time, id, confirms)
    alerts = []
    for doc in docs:
        if doc["event"]["dataset"] == "falco.alerts":
            pod = doc.get("orchestrator", {}).get("resource", {}).get("name")
            if pod:
                alerts.append((doc["orchestrator"]["namespace"], pod, to_epoch_ms(doc["@timestamp"]),
                               doc["event"]["id"]))
            continue
        audit = doc["kubernetes"]["audit"]
        t = to_epoch_ms(doc["@timestamp"])
        ok = audit.get("responseStatus", {}).get("code", 200) < 400
        ref = audit.get("objectRef", {})
        if audit["verb"] == "create" and ref.get("resource") == "pods" and not ref.get("subresource") and ok:
            name = ref.get("name") or audit["responseObject"]["metadata"]["name"]
            sa = (audit.get("requestObject", {}).get("spec", {}).get("serviceAccountName") or "default")
            facts.append((ref["namespace"], name, f"system:serviceaccount:{ref['namespace']}:{sa}", "pod_create", t))
        users = {u for u in (audit["user"]["username"], audit.get("impersonatedUser", {}).get("username"))
                 if u and u.startswith("system:serviceaccount:") and len(u.split(":")) == 4}
        claim = audit["user"].get("extra", {}).get("authentication.kubernetes.io/pod-name")
        if claim and ok and audit["user"]["username"] in users:
            ns = audit["user"]["username"].split(":")[2]
            facts.append((ns, claim[0], audit["user"]["username"], "pod_claim", t))
        if audit["stage"] != "RequestReceived":
            confirms = ok and ((ref.get("resource") in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
                                and audit["verb"] in ("create", "update", "patch", "delete"))
                               or (ref.get("resource") == "secrets" and audit["verb"] in ("get", "list")))
            for sa in users:
                actions.append((sa, t, doc["event"]["id"], confirms))
    for item in inventory["items"]:
        meta = item["metadata"]
        facts.append((meta["namespace"], meta["name"],
                      f"system:serviceaccount:{meta['namespace']}:{item['spec']['serviceAccountName']}",
                      "inventory", None))
    rank = {"pod_create": 3, "pod_claim": 2, "inventory": 1}
    out = []
    for ns, pod, t, alert_id in alerts:
        usable = [f for f in facts if f[:2] == (ns, pod) and (f[4] is None or f[4] <= t + window_ms)]
        if not usable:
            continue
        assert len({f[2] for f in usable}) == 1, "random data has one SA per pod"
        best = max(usable, key=lambda f: rank[f[3]])
        ids = sorted({a[2] for a in actions if a[0] == best[2] and t <= a[1] <= t + window_ms})
        if ids:
            confirmed = any(a[3] for a in actions if a[0] == best[2] and t <= a[1] <= t + window_ms)
            out.append((alert_id, best[2], best[3], tuple(ids), confirmed))
    return sorted(out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_data_matches_the_brute_force_oracle_in_batch(seed, tmp_path):
    audit, falco, inventory = random_records(seed)
    docs = ecs_docs(audit, falco)
    expected = oracle(docs, inventory)
    assert len(expected) >= 5, "the random data must actually produce incidents"
    pods = tmp_path / "pods.json"
    pods.write_text(__import__("json").dumps(inventory))
    run_batch(tmp_path, elements_of(docs), matches_latest(expected), pods_file=str(pods))


def scoped(elements: list) -> list:
    """What the batch pipeline sends to the join: only the inputs that can join one of the alerts."""
    scope = correlate.JoinScope([e for e in elements if isinstance(e, correlate.AlertSeen)], WINDOW_MS)
    return [e for e in elements if scope.keep(e)]


def test_the_join_given_only_what_the_alerts_can_join_gives_the_same_incidents(scenario_files, tmp_path):
    scenario, paths, elements = scenario_files
    kept = scoped(elements)
    assert len(kept) < len(elements) // 2, "the scope must actually drop inputs"
    run_batch(tmp_path, kept, matches_latest(expected_summaries(scenario)), pods_file=str(paths["pods"]))


@pytest.mark.parametrize("seed", [1, 2])
def test_random_data_scoped_by_its_alerts_matches_the_brute_force_oracle(seed, tmp_path):
    audit, falco, inventory = random_records(seed)
    docs = ecs_docs(audit, falco)
    pods = tmp_path / "pods.json"
    pods.write_text(__import__("json").dumps(inventory))
    run_batch(tmp_path, scoped(elements_of(docs)), matches_latest(oracle(docs, inventory)), pods_file=str(pods))


@pytest.mark.parametrize("seed", [4])
def test_random_data_matches_the_brute_force_oracle_in_streaming(seed, tmp_path):
    audit, falco, inventory = random_records(seed, events=600)
    docs = ecs_docs(audit, falco)
    expected = oracle(docs, inventory)
    pods = tmp_path / "pods.json"
    pods.write_text(__import__("json").dumps(inventory))
    with TestPipeline(options=streaming_options()) as p:
        incidents = (p | shuffled_stream(timed(elements_of(docs)), LATENESS_MS, seed=seed, batch=60)
                     | CorrelateByServiceAccount(WINDOW, LATENESS, pods_file=str(pods)))
        assert_that(incidents, matches_latest(expected, early=True))
