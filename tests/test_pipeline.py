"""The spine end to end through the CLI: ids, dead letters, counters, options, runners."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from tests.conftest import shared
from tests.helpers import DEMO, ROOT, read_ndjson, run_cli, run_to_dir


def test_demo_data_is_what_the_generator_makes():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_demo_data.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_line_is_an_event_or_a_dead_letter_and_the_books_balance(tmp_path):
    junk = tmp_path / "junk.log"
    junk.write_bytes(b'not json\n{"kind":"Event"\n[1,2]\n{"kind":0}\n')
    code, summary, out = run_to_dir(tmp_path, "--audit", DEMO / "audit.log", junk, "--falco", DEMO / "falco.json")
    assert code == 0
    events = read_ndjson(out, "events")
    dead = read_ndjson(out, "dead-letters")
    audit_lines = sum(1 for line in (DEMO / "audit.log").read_bytes().splitlines() if line.strip())
    falco_lines = sum(1 for line in (DEMO / "falco.json").read_bytes().splitlines() if line.strip())
    assert len(events) == audit_lines + falco_lines
    assert len(dead) == 4
    assert {d["kubehunt"]["dead_letter"]["line"] for d in dead} == {1, 2, 3, 4}
    assert all(d["kubehunt"]["dead_letter"]["raw"] and d["kubehunt"]["dead_letter"]["reason"] for d in dead)
    assert summary["records_read"] == len(events) + len(dead) == summary["records_accounted"]
    assert summary["balanced"] is True


def test_documents_carry_event_time_dataset_id_and_the_original(tmp_path):
    code, _, out = run_to_dir(tmp_path, "--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json")
    assert code == 0
    raw_audit = [json.loads(line) for line in (DEMO / "audit.log").read_text().splitlines()]
    by_audit_id = {d["kubernetes"]["audit"]["auditID"]: d for d in read_ndjson(out, "events")
                   if d["event"]["dataset"] == "kubernetes.audit_logs"}
    for raw in raw_audit:
        doc = by_audit_id[raw["auditID"]]
        assert doc["@timestamp"] == raw["requestReceivedTimestamp"]
        assert doc["kubernetes"]["audit"] == raw
        assert doc["event"]["id"].startswith(raw["auditID"])
    falco = [d for d in read_ndjson(out, "events") if d["event"]["dataset"] == "falco.alerts"]
    assert len(falco) == 45 and all(d["event"]["id"] == d["falco"]["uuid"] for d in falco)


def test_reshipped_identical_line_keeps_its_id_and_reused_audit_id_does_not_collide(tmp_path):
    # Elastic's own sample reuses auditID "abcde12345" + stage ResponseComplete for different events.
    sample = shared("audit", "elastic", "kubernetes-audit_logs-test-audit.log")
    twice = tmp_path / "twice.log"
    twice.write_bytes(sample.read_bytes() + sample.read_bytes())
    code, _, out = run_to_dir(tmp_path, "--audit", twice)
    assert code == 0
    docs = read_ndjson(out, "events")
    native = [d for d in docs if d.get("kubernetes", {}).get("audit", {}).get("auditID") == "abcde12345"]
    ids = [d["event"]["id"] for d in native]
    distinct_events = {json.dumps(d["kubernetes"]["audit"], sort_keys=True) for d in native}
    # Each distinct event has its own id (the same event arriving inside an AKS wrapper and on its own
    # is the same event), and every re-shipped copy lands on the id of its first copy.
    assert len(set(ids)) == len(distinct_events) >= 3
    assert all(ids.count(i) % 2 == 0 for i in set(ids))


def test_unknown_option_fails_fast_with_a_clear_message(tmp_path, capsys):
    code = run_cli("run", "--audit", DEMO / "audit.log", "--output-dir", tmp_path, "--no-such-flag")
    assert code == 2
    assert "unknown option(s): --no-such-flag" in capsys.readouterr().err


def test_input_that_matches_nothing_fails_fast(tmp_path, capsys):
    code = run_cli("run", "--audit", tmp_path / "missing-*.log", "--output-dir", tmp_path)
    assert code == 2
    assert "matches no file" in capsys.readouterr().err


def test_help_lists_every_group_and_beam_passthrough():
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--help"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0
    for flag in ("--audit", "--falco", "--pods", "--output-dir", "--es-url", "--summary-json",
                 "--correlation-window", "--secret-reader-exclusions", "--direct_running_mode"):
        assert flag in proc.stdout, flag


@pytest.mark.slow
def test_multi_processing_runner_gives_the_same_documents(tmp_path):
    args = ("--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json")
    code_a, summary_a, out_a = run_to_dir(tmp_path / "a", *args)
    code_b, summary_b, out_b = run_to_dir(tmp_path / "b", *args, "--direct_running_mode=multi_processing",
                                          "--direct_num_workers=2")
    assert code_a == code_b == 0
    key = lambda d: d["event"]["id"]  # noqa: E731
    assert sorted(read_ndjson(out_a, "events"), key=key) == sorted(read_ndjson(out_b, "events"), key=key)
    assert sorted(read_ndjson(out_a, "incidents"), key=key) == sorted(read_ndjson(out_b, "incidents"), key=key)
    assert summary_b["balanced"] and summary_a["events"] == summary_b["events"]
    assert summary_a["hunts"] == summary_b["hunts"]


@pytest.mark.parametrize("argv", [
    ["setup", "--es-password", "hunter2-secret"],
    ["hunts", "list", "--es-password=hunter2-secret"],
    ["run", "--audit", str(DEMO / "audit.log"), "--output-dir", "/tmp/never", "--es-password", "hunter2-secret"],
    ["run", "--audit", str(DEMO / "audit.log"), "--output-dir", "/tmp/never", "--es-api-key=hunter2-secret"],
])
def test_a_secret_mistakenly_given_on_the_command_line_is_refused_and_not_echoed(argv, capsys):
    # argparse exits (2) for the subcommands it parses; `run` returns 2 from its own check.
    if argv[0] == "run":
        code = run_cli(*argv)
    else:
        with pytest.raises(SystemExit) as exc:
            run_cli(*argv)
        code = exc.value.code
    assert code == 2
    err = capsys.readouterr().err
    assert "hunter2-secret" not in err
    assert "--es-password" in err or "--es-api-key" in err


@pytest.mark.parametrize("content,reason", [
    (b"not json", "cannot read a pod inventory"),
    (b'{"kind": "List", "items": [{"metadata": {"name": "web"}}]}', "items[0] has no metadata.namespace/name"),
])
def test_a_malformed_pod_inventory_fails_fast_saying_why(tmp_path, capsys, content, reason):
    pods = tmp_path / "pods.json"
    pods.write_bytes(content)
    code = run_cli("run", "--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json", "--pods", pods,
                   "--output-dir", tmp_path / "out")
    assert code == 2
    err = capsys.readouterr().err
    assert reason in err and str(pods) in err


def test_the_demo_holds_exactly_its_planted_escalation_chain(tmp_path):
    """scripts/gen_demo_data.py plants one chain: a shell in pod shop/web-<hash> at 10:15, then its SA
    reads secrets (10:21) and binds a cluster role (10:24). The expectation is taken from the raw demo
    files (not from kubehunt): the alert by its rule, the actions by their user and time."""
    falco = [json.loads(line) for line in (DEMO / "falco.json").read_text().splitlines()]
    audit = [json.loads(line) for line in (DEMO / "audit.log").read_text().splitlines()]
    alert = next(a for a in falco if a["rule"] == "Terminal shell in container")
    pod = alert["output_fields"]["k8s.pod.name"]
    alert_at = datetime.fromisoformat(alert["time"][:26] + "+00:00")
    sa = "system:serviceaccount:shop:web"
    actions = sorted((e["requestReceivedTimestamp"], e["auditID"], e["verb"], e["objectRef"]["resource"]) for e in audit
                     if e["user"]["username"] == sa and e["stage"] != "RequestReceived"
                     and timedelta(0) <= datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00"))
                     - alert_at <= timedelta(minutes=30))
    assert [(verb, resource) for _, _, verb, resource in actions][-2:] == [("list", "secrets"),
                                                                         ("create", "clusterrolebindings")]
    code, summary, out = run_to_dir(tmp_path, "--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json")
    assert code == 0
    incidents = read_ndjson(out, "incidents")
    assert len(incidents) == 1 and summary["incidents"]["written"] == summary["incidents"]["confirmed"] == 1
    inc = incidents[0]["kubehunt"]["incident"]
    assert (inc["alert"], inc["alert_rule"], inc["pod"], inc["namespace"]) == (
        alert["uuid"], "Terminal shell in container", pod, "shop")
    assert pod.startswith("web-") and inc["service_account"] == sa and inc["sa_source"] == "pod_create"
    assert [(a["event_id"].split("-ResponseComplete-")[0], a["verb"], a["resource"]) for a in inc["actions"]] == [
        (audit_id, verb, resource) for _, audit_id, verb, resource in actions]
    assert inc["confirmed"] is True
    assert {"secret-access-unexpected-sa", "rbac-modification"} <= set(inc["hunts"])
    assert incidents[0]["event"]["start"] == "2026-01-15T10:15:00.000Z"
    assert incidents[0]["event"]["end"] == "2026-01-15T10:24:00.000Z"
