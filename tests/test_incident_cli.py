"""The generated scenario through the whole `kubehunt run` CLI on the multi-process DirectRunner:
`--output-dir` holds exactly the expected incidents, one line (the final version) per incident."""
from __future__ import annotations

import glob
import json

import orjson
import pytest

from pipeline import cli
from tests.builders.scenario import generate


def run_cli(tmp_path, scenario, *extra: str) -> tuple[list[dict], dict]:
    paths = scenario.write(tmp_path / "in")
    out = tmp_path / "out"
    code = cli.main(["run", "--audit", str(paths["audit"]), "--falco", str(paths["falco"]),
                     "--pods", str(paths["pods"]), "--output-dir", str(out),
                     "--summary-json", str(tmp_path / "summary.json"), *extra,
                     "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert code == 0
    docs = [orjson.loads(line) for path in sorted(glob.glob(str(out / "incidents*.ndjson")))
            for line in open(path, "rb") if line.strip()]
    return docs, json.loads((tmp_path / "summary.json").read_text())


def check_against_ground_truth(scenario, docs, summary, expected):
    ids = [d["event"]["id"] for d in docs]
    assert len(ids) == len(set(ids)), "one line per incident"
    got = {d["kubehunt"]["incident"]["alert"]: d for d in docs}
    assert set(got) == set(expected)
    for alert, want in expected.items():
        inc = got[alert]["kubehunt"]["incident"]
        assert (inc["service_account"], inc["sa_source"], tuple(inc["audit_event_ids"]), inc["confirmed"]) == (
            want.service_account, want.sa_source, want.audit_event_ids, want.confirmed), alert
        doc = got[alert]
        assert doc["event"]["id"] == f"incident-{alert}" and doc["event"]["kind"] == "alert"
        assert doc["event"]["severity"] == (99 if want.confirmed else 73)
        assert inc["version"] == inc["action_count"] * 4 + {"pod_create": 3, "pod_claim": 2, "inventory": 1,
                                                               "assumed_default": 0}[want.sa_source]
        assert [a["event_id"] for a in inc["actions"]] and sorted(a["event_id"] for a in inc["actions"]) == \
            inc["audit_event_ids"]
    incidents = summary["incidents"]
    assert incidents["candidates"] == len(expected)
    assert incidents["confirmed"] == sum(e.confirmed for e in expected.values())


def test_cli_multiprocess_run_writes_the_expected_incidents_small(tmp_path):
    scenario = generate(seed=21, hot_events=2000)
    docs, summary = run_cli(tmp_path, scenario)
    check_against_ground_truth(scenario, docs, summary, scenario.expected)
    assert summary["incidents"]["unresolved_alerts"] == len(scenario.unresolved)
    assert summary["incidents"]["sa_sources"] == {
        s: sum(e.sa_source == s for e in scenario.expected.values()) for s in ("inventory", "pod_claim", "pod_create")}


def test_cli_assume_default_sa_attributes_the_unresolved_alert(tmp_path):
    scenario = generate(seed=22, hot_events=500)
    docs, summary = run_cli(tmp_path, scenario, "--assume-default-sa")
    check_against_ground_truth(scenario, docs, summary, {**scenario.expected, **scenario.with_default_sa})
    assert summary["incidents"]["unresolved_alerts"] == 0


@pytest.mark.slow
def test_cli_multiprocess_run_with_a_hot_account_of_100k_events(tmp_path):
    scenario = generate(seed=7, hot_events=100_000)
    docs, summary = run_cli(tmp_path, scenario)
    check_against_ground_truth(scenario, docs, summary, scenario.expected)
