"""Misconfiguration fails fast in the driver: exit 2 naming the option before anything is read; run
failures in one line (exit 1) with no Beam traceback and no `beam-temp-*` left; secrets and URL
credentials never printed; `--no-es-verify-certs` warned about once; no per-request log noise."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from pipeline.summary import Summary, redact_url, redact_urls_in
from pipeline.validate import index_name_problem
from tests.helpers import DEMO, ROOT, run_cli

SECRET = "S3cr3t-do-not-print"


def run(capsys, *args) -> tuple[int, str]:
    code = run_cli("run", "--audit", DEMO / "audit.log", *args)
    return code, capsys.readouterr().err


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- destinations ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("option", "value", "why"), [
    ("--audit-index", "_all", "not a concrete index"),
    ("--audit-index", "*", "wildcards"),
    ("--falco-index", "logs-falco-*", "wildcards"),
    ("--incidents-index", "<kubehunt-{now/d}>", "wildcards/date math"),
    ("--dead-letter-index", "Dead-Letters", "lowercase"),
    ("--audit-index", "_audit", "must not start with"),
    ("--audit-index", "a,b", "characters"),
    ("--audit-index", "remote:audit", "characters"),
    ("--falco-index", "x" * 256, "longer than 255 bytes"),
    ("--incidents-index", "logs-falco.alerts-incidents", "matches the index template of --falco-index"),
    ("--audit-index", "logs-falco.alerts-prod", "matches the index template of --falco-index"),
    ("--dead-letter-index", "logs-kubernetes.audit_logs-dl", "matches the index template of --audit-index"),
])
def test_a_destination_that_cannot_be_one_exits_2_naming_the_option_before_reading(
        tmp_path, capsys, option, value, why):
    out = tmp_path / "out"
    code, err = run(capsys, option, value, "--output-dir", out)
    assert code == 2
    assert err.startswith(f"kubehunt: error: {option}") and why in err
    assert not out.exists()   # nothing ran


@pytest.mark.parametrize("args", [
    ("--audit-index", "kubehunt-incidents"),
    ("--falco-index", "logs-kubernetes.audit_logs-default"),
    ("--dead-letter-index", "shared", "--incidents-index", "shared"),
])
def test_two_destinations_on_one_index_exit_2_naming_both_options(tmp_path, capsys, args):
    code, err = run(capsys, *args, "--output-dir", tmp_path / "out")
    assert code == 2 and "are both" in err and "each destination needs its own index" in err
    assert err.count("-index") == 2


def test_default_and_ordinary_destination_names_are_accepted():
    for name in ("logs-kubernetes.audit_logs-default", "kubehunt-incidents", "my.audit-2026", "a_b+c"):
        assert index_name_problem(name) is None


# --- inputs and outputs ---------------------------------------------------------------------------

def test_an_output_dir_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = run(capsys, "--output-dir", tmp_path / "f")
    assert code == 2 and "--output-dir" in err and "not a directory" in err
    code, err = run(capsys, "--output-dir", tmp_path / "f" / "sub")
    assert code == 2 and "--output-dir" in err and "is not a directory" in err


def test_an_output_dir_that_cannot_be_written_exits_2(capsys):
    # /proc refuses new files even to root (a chmod 555 folder would not stop root).
    code, err = run(capsys, "--output-dir", "/proc/kubehunt-out")
    assert code == 2 and "--output-dir /proc/kubehunt-out: cannot write into /proc" in err


def _broken_hunts(tmp_path):
    import mappings

    folder = tmp_path / "hunts"
    folder.mkdir()
    text = mappings.path("hunts", "pod-attach.yaml").read_text()
    (folder / "pod-attach.yaml").write_text(text.replace("in ('create', 'get')", "in ('create', 'get') and ))"))
    return folder


def test_an_invalid_hunt_file_exits_2_naming_hunts_dir_and_the_file(tmp_path, capsys):
    folder = _broken_hunts(tmp_path)
    code, err = run(capsys, "--hunts-dir", folder, "--output-dir", tmp_path / "out")
    assert code == 2
    assert f"--hunts-dir: {folder / 'pod-attach.yaml'}: match: syntax error" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("action", ["list", "test"])
def test_hunts_list_and_test_refuse_an_invalid_hunt_file(tmp_path, capsys, action):
    folder = _broken_hunts(tmp_path)
    assert run_cli("hunts", action, "--hunts-dir", folder) == 2
    assert "pod-attach.yaml: match: syntax error" in capsys.readouterr().err


# --- run failures: one line, exit 1, no temp folders ----------------------------------------------

def _limit_file_size():
    # A real write failure on demand: files of the child may not grow past 64 KiB (EFBIG), and
    # SIGXFSZ is ignored so that the write raises instead of killing the process.
    import resource
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_failed_output_dir_run_is_one_line_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--audit", str(DEMO / "audit.log"),
                           "--output-dir", str(out), "--summary-json", str(tmp_path / "s.json")],
                          capture_output=True, text=True, cwd=ROOT, preexec_fn=_limit_file_size, timeout=300)
    err = proc.stderr
    assert proc.returncode == 1, err
    assert "kubehunt: run failed: " in err and "File too large" in err
    assert "Traceback" not in err and len(err.splitlines()) < 10
    left = os.listdir(out)
    assert not [p for p in left if p.startswith("beam-temp-") or p.endswith(".tmp")], left
    # Every file that is there is whole: each line a JSON document.
    for name in left:
        for line in (out / name).read_bytes().splitlines():
            json.loads(line)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["balanced"] is False and "File too large" in summary["failed"]


def test_elasticsearch_unreachable_with_no_setup_is_one_clear_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    code, err = run(capsys, "--es-url", url, "--no-setup", "--es-retry-deadline", "1s",
                    "--summary-json", tmp_path / "s.json")
    assert code == 1
    assert f"kubehunt: run failed: Elasticsearch at {url} did not answer within --es-retry-deadline (1s)" in err
    assert "Traceback" not in err and len(err.splitlines()) < 5
    assert json.loads((tmp_path / "s.json").read_text())["failed"]


# --- secrets --------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--es-password-file", "--es-api-key-file", "--es-bearer-token-file"])
def test_a_secret_given_in_place_of_a_secret_file_is_not_printed(capsys, option):
    code, err = run(capsys, option, SECRET, "--es-username", "u")
    assert code == 2 and option in err and "no such file" in err
    assert SECRET not in err


@pytest.mark.parametrize("url", [f"http://127.0.0.1:9/?api_key={SECRET}", f"http://127.0.0.1:9/#{SECRET}",
                                 f"http://elastic:{SECRET}@127.0.0.1:9", f"{SECRET}"])
def test_credentials_in_an_es_url_are_refused_and_never_printed(capsys, url):
    code, err = run(capsys, "--es-url", url)
    assert code == 2 and "--es-url" in err and SECRET not in err


def test_urls_are_redacted_wherever_they_are_shown():
    url = f"https://elastic:{SECRET}@es.example:9200/prefix?api_key={SECRET}#{SECRET}"
    assert redact_url(url) == "https://***@es.example:9200/prefix?***"
    assert SECRET not in redact_urls_in(f"failed talking to {url}, giving up")
    summary = Summary({}, 1.0, f"Elasticsearch {url}")
    assert SECRET not in summary.render() and SECRET not in json.dumps(summary.as_dict())
    assert redact_url("http://127.0.0.1:9200") == "http://127.0.0.1:9200"


def test_no_verify_certs_warns_once_in_the_driver_and_names_what_is_sent(capsys, caplog, monkeypatch):
    monkeypatch.setenv("KUBEHUNT_ES_API_KEY", SECRET)
    with caplog.at_level(logging.WARNING):
        code, err = run(capsys, "--es-url", f"https://127.0.0.1:{free_port()}", "--no-es-verify-certs",
                        "--no-setup", "--es-retry-deadline", "0s")
    assert code == 1
    warnings = [r.getMessage() for r in caplog.records if "--no-es-verify-certs" in r.getMessage()]
    assert len(warnings) == 1
    assert "NOT verified" in warnings[0] and "an API key" in warnings[0] and SECRET not in caplog.text + err


def test_verified_certs_do_not_warn(capsys, caplog):
    with caplog.at_level(logging.WARNING):
        run(capsys, "--es-url", f"https://127.0.0.1:{free_port()}", "--no-setup", "--es-retry-deadline", "0s")
    assert not [r for r in caplog.records if "verif" in r.getMessage()]


@pytest.mark.elasticsearch
@pytest.mark.slow
def test_multi_process_workers_do_not_log_a_line_per_bulk_request(es_url, es, unique_name, tmp_path):
    names = [f"hv-{unique_name}-{k}" for k in ("audit", "falco", "incidents", "dl")]
    env = {k: v for k, v in os.environ.items() if k != "KUBEHUNT_ES_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--audit", str(DEMO / "audit.log"), "--falco",
         str(DEMO / "falco.json"), "--es-url", es_url, "--es-batch-docs", "20",
         "--audit-index", names[0], "--falco-index", names[1], "--incidents-index", names[2],
         "--dead-letter-index", names[3], "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    es.indices.refresh(index=names[0])
    assert es.count(index=names[0])["count"] > 20   # several bulk requests were made ...
    assert "_bulk" not in proc.stderr and "[status:" not in proc.stderr   # ... and none was logged


def test_setup_refuses_a_destination_that_cannot_be_one(capsys):
    assert run_cli("setup", "--audit-index", "_all", "--es-url", f"http://127.0.0.1:{free_port()}") == 2
    assert "--audit-index: '_all' is not a concrete index" in capsys.readouterr().err


def test_a_worker_failure_is_described_by_its_innermost_error_in_one_line():
    import apache_beam as beam

    from pipeline.validate import describe_failure
    from transforms.elasticsearch import EsWriteError

    def fail(_):
        raise EsWriteError(f"Elasticsearch still failing after 300s at http://u:{SECRET}@h:9200/?k={SECRET}")

    with pytest.raises(Exception) as caught:
        with beam.Pipeline() as p:
            p | beam.Create([1]) | "Fail" >> beam.Map(fail)
    text = describe_failure(caught.value)
    assert text.startswith("EsWriteError: Elasticsearch still failing after 300s at http://***@h:9200/?***")
    assert "\n" not in text and "while running" not in text and SECRET not in text
