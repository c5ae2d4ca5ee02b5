"""`kubehunt`'s exit codes by command, in-process: 0 done, 2 a configuration error naming what to fix
(never echoing a value that may be a secret), and each subcommand reaching its own handler."""
from __future__ import annotations

import json

import pytest

from tests.helpers import DEMO, run_cli
from transforms.hunts import load_hunts

SECRET = "S3cr3t-do-not-print"


def test_an_input_that_matches_nothing_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope" / "*.log"
    assert run_cli("run", "--audit", missing, "--output-dir", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err == f"kubehunt: error: input {str(missing)!r} matches no file\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [("setup",), ("report", "pod-exec")])
def test_es_commands_refuse_a_url_without_a_scheme_with_exit_2(capsys, command):
    assert run_cli(*command, "--es-url", "es.internal:9200") == 2
    assert capsys.readouterr().err == ("kubehunt: error: --es-url (or $KUBEHUNT_ES_URL): a URL must start with "
                                       "http:// or https://\n")


@pytest.mark.parametrize("command", [("hunts", "list"), ("setup",), ("rules", "export", "--format", "elastic")])
def test_an_unknown_option_exits_2_naming_the_flag_but_not_its_value(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        run_cli(*command, "--es-password", SECRET)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --es-password" in err and SECRET not in err


def test_rules_export_reaches_its_own_command_and_writes_rules_named_by_hunt(tmp_path, capsys):
    out = tmp_path / "rules.ndjson"
    assert run_cli("rules", "export", "--format", "elastic", "--out", out) == 0
    ids = [json.loads(line)["rule_id"] for line in out.read_text().splitlines() if line.strip()]
    assert "kubehunt-pod-exec" in ids and len(ids) == len(set(ids))
    assert set(ids) <= {f"kubehunt-{h.id}" for h in load_hunts()}


def test_hunts_test_runs_every_example_and_exits_0(capsys):
    assert run_cli("hunts", "test") == 0


def test_a_hunts_dir_that_is_not_a_folder_exits_2(tmp_path, capsys):
    assert run_cli("hunts", "list", "--hunts-dir", tmp_path / "none") == 2
    assert capsys.readouterr().err.startswith("kubehunt: error: --hunts-dir: ")


def test_run_with_an_unknown_beam_option_exits_2_naming_only_the_flag(tmp_path, capsys):
    code = run_cli("run", "--audit", DEMO / "audit.log", "--output-dir", tmp_path / "out",
                   f"--no-such-option={SECRET}")
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("kubehunt: error: unknown option(s): --no-such-option (see `kubehunt run --help`")
    assert SECRET not in err


def test_a_runner_failure_exits_1_in_one_line_and_deletes_only_the_temp_folders_of_this_run(
        tmp_path, capsys, monkeypatch):
    import apache_beam as beam

    out = tmp_path / "out"
    (out / "beam-temp-of-an-earlier-run").mkdir(parents=True)

    def failing_run(self, *args, **kwargs):
        # What a file sink leaves when its worker fails mid-write, then the runner's error.
        (out / "beam-temp-events-123").mkdir()
        raise RuntimeError("Pipeline failed:\nTraceback ...\nOSError: [Errno 28] No space left on device "
                           "[while running 'WriteEvents']")

    monkeypatch.setattr(beam.Pipeline, "run", failing_run)
    code = run_cli("run", "--audit", DEMO / "audit.log", "--output-dir", out, "--summary-json", tmp_path / "s.json")
    assert code == 1
    err = capsys.readouterr().err
    assert err.endswith("kubehunt: run failed: OSError: [Errno 28] No space left on device (writes are idempotent: "
                        "re-run the same input once the cause is fixed)\n")
    assert sorted(p.name for p in out.iterdir()) == ["beam-temp-of-an-earlier-run"]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["balanced"] is False and "No space left on device" in summary["failed"]
