"""Every `kubehunt run` option reaches the run's configuration with the value given, and its default is
the one `--help` and the docs state (written out here by hand, not read from the same constants), so a
dropped option, a changed default or a unit off by a factor shows as a wrong value."""
from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.cli import _parser
from pipeline.options import ConfigError, config_from_args
from tests.helpers import DEMO

AUDIT = str(DEMO / "audit.log")
FALCO = str(DEMO / "falco.json")


def config(*argv: str):
    args, extra = _parser().parse_known_args(["run", "--audit", AUDIT, *argv])
    assert extra == []
    return config_from_args(args)


def test_defaults_are_the_documented_ones():
    cfg = config()
    assert (cfg.audit, cfg.falco, cfg.pods, cfg.output_dir, cfg.summary_json) == ((AUDIT,), (), None, None, None)
    assert cfg.chunk_lines == 1000
    assert cfg.split_bytes == 8 * 2**20 and cfg.max_line_bytes == 8 * 2**20
    assert cfg.spread_chunks is False and cfg.setup_destinations is True and cfg.assume_default_sa is False
    assert cfg.correlation_window == timedelta(minutes=30) and cfg.allowed_lateness == timedelta(minutes=10)
    assert cfg.process.correlate is True and cfg.process.keep_original is False
    assert cfg.process.correlation_window_ms == 1_800_000
    es = cfg.es
    assert (es.batch_docs, es.batch_bytes, es.concurrency) == (1000, 5_242_880, 2)
    assert type(es.batch_bytes) is int
    assert es.request_timeout == 60.0 and es.retry_deadline == 300.0 and es.verify_certs is True
    assert (es.username, es.password_file, es.api_key_file, es.bearer_token_file) == (None,) * 4
    assert (es.ca_certs, es.client_cert, es.client_key) == (None,) * 3
    assert dict(es.indices) == {"audit": "logs-kubernetes.audit_logs-default",
                                "falco": "logs-falco.alerts-default",
                                "incidents": "kubehunt-incidents", "dead_letters": "kubehunt-dead-letters"}


def test_every_option_reaches_the_configuration(tmp_path):
    files = {name: tmp_path / name for name in ("pw", "key", "token", "ca.pem", "cert.pem", "cert.key")}
    for path in files.values():
        path.write_text("x\n")
    cfg = config("--falco", FALCO, "--chunk-lines", "7", "--split-bytes", "4096", "--max-line-bytes", "512",
                 "--spread-chunks", "--no-setup", "--assume-default-sa", "--keep-original", "--no-correlation",
                 "--correlation-window", "45m", "--allowed-lateness", "90s",
                 "--output-dir", str(tmp_path / "out"), "--summary-json", str(tmp_path / "s.json"),
                 "--es-url", "https://a:9200", "--es-url", "https://b:9200",
                 "--es-username", "elastic", "--es-password-file", str(files["pw"]),
                 "--es-api-key-file", str(files["key"]), "--es-bearer-token-file", str(files["token"]),
                 "--es-ca-certs", str(files["ca.pem"]), "--es-client-cert", str(files["cert.pem"]),
                 "--es-client-key", str(files["cert.key"]), "--no-es-verify-certs",
                 "--es-timeout", "7.5", "--es-batch-docs", "11", "--es-batch-bytes", "2048",
                 "--es-concurrency", "3", "--es-retry-deadline", "2m",
                 "--audit-index", "a1", "--falco-index", "f1", "--incidents-index", "i1",
                 "--dead-letter-index", "d1")
    assert cfg.falco == (FALCO,)
    assert (cfg.chunk_lines, cfg.split_bytes, cfg.max_line_bytes) == (7, 4096, 512)
    assert cfg.spread_chunks and not cfg.setup_destinations and cfg.assume_default_sa
    assert cfg.process.keep_original and not cfg.process.correlate
    assert cfg.correlation_window == timedelta(minutes=45) and cfg.process.correlation_window_ms == 2_700_000
    assert cfg.allowed_lateness == timedelta(seconds=90)
    assert cfg.output_dir == str(tmp_path / "out") and cfg.summary_json == str(tmp_path / "s.json")
    es = cfg.es
    assert es.hosts == ("https://a:9200", "https://b:9200")
    assert (es.username, es.password_file, es.api_key_file, es.bearer_token_file) == (
        "elastic", str(files["pw"]), str(files["key"]), str(files["token"]))
    assert (es.ca_certs, es.client_cert, es.client_key) == (
        str(files["ca.pem"]), str(files["cert.pem"]), str(files["cert.key"]))
    assert es.verify_certs is False and es.request_timeout == 7.5
    assert (es.batch_docs, es.batch_bytes, es.concurrency, es.retry_deadline) == (11, 2048, 3, 120.0)
    assert dict(es.indices) == {"audit": "a1", "falco": "f1", "incidents": "i1", "dead_letters": "d1"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("1500ms", 1.5), ("90s", 90), ("2.5m", 150), ("2h", 7200), ("45", 45), ("0.25", 0.25),
])
def test_durations_in_every_unit(text, seconds):
    assert config("--allowed-lateness", text).allowed_lateness == timedelta(seconds=seconds)


@pytest.mark.parametrize("option", ["--chunk-lines", "--split-bytes", "--max-line-bytes", "--es-batch-docs",
                                    "--es-batch-bytes", "--es-concurrency"])
def test_one_is_the_smallest_count_accepted(option, capsys):
    args, _ = _parser().parse_known_args(["run", "--audit", AUDIT, option, "1"])
    assert getattr(args, option[2:].replace("-", "_")) == 1
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_known_args(["run", "--audit", AUDIT, option, "0"])
    assert exit_.value.code == 2
    assert f"argument {option}: 0 must be a positive integer" in capsys.readouterr().err


def test_a_window_of_one_millisecond_is_positive_enough():
    assert config("--correlation-window", "1ms").process.correlation_window_ms == 1
    with pytest.raises(ConfigError, match="--correlation-window must be positive"):
        config("--correlation-window", "0s")


def test_hunt_lists_given_twice_keep_the_last_value_per_name():
    cfg = config("--hunt-list", "known_memfd_users=java, node ,", "--known-debugger-procs", "gdb",
                 "--hunt-list", "known_memfd_users=python3")
    assert dict(cfg.process.hunts.lists) == {"known_memfd_users": ("python3",), "known_debugger_procs": ("gdb",)}
    cfg = config("--hunt-list", "known_memfd_users=java, node ,")
    assert dict(cfg.process.hunts.lists) == {"known_memfd_users": ("java", "node")}


def test_verbose_has_a_short_form_and_usage_names_kubehunt(capsys):
    assert _parser().parse_known_args(["-v", "hunts", "list"])[0].verbose is True
    assert _parser().parse_known_args(["hunts", "list"])[0].verbose is False
    with pytest.raises(SystemExit):
        _parser().parse_known_args([])
    assert capsys.readouterr().err.startswith("usage: kubehunt ")
