"""The Elasticsearch options of the CLI, each checked by its effect: what the client sends on the wire
(seen by a recording proxy in front of the real node), how it connects, how the sink batches, and that
secrets come only from the environment or files, in a fixed precedence, and never reach the output.
"""
from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time

import pytest

from tests import faultproxy
from tests.faultproxy import FaultProxy
from tests.helpers import DEMO, run_cli, run_to_dir

SECRET_ENV = ("KUBEHUNT_ES_API_KEY", "KUBEHUNT_ES_PASSWORD", "KUBEHUNT_ES_BEARER_TOKEN", "KUBEHUNT_ES_URL")


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch):
    for name in SECRET_ENV[:3]:
        monkeypatch.delenv(name, raising=False)


def es_settings(*argv: str):
    """The EsSettings `kubehunt run ARGV` would use, built by the CLI's own parser."""
    from pipeline.cli import _parser
    from pipeline.options import config_from_args

    args, extra = _parser().parse_known_args(["run", "--audit", str(DEMO / "audit.log"), *map(str, argv)])
    assert not extra
    return config_from_args(args).es


class Recorder:
    """Every request that passes a FaultProxy (method, path, headers dict, body), recorded from the
    proxy's own request reader: the real node still answers them."""

    def __init__(self, monkeypatch):
        self.requests: list[tuple[str, str, dict, bytes | None]] = []
        real = faultproxy._read_request

        def reading(reader):
            request = real(reader)
            if request is not None:
                method, target, headers, body = request
                self.requests.append((method, target.split("?", 1)[0], {k.lower(): v for k, v in headers}, body))
            return request

        monkeypatch.setattr(faultproxy, "_read_request", reading)

    def authorization(self) -> set[str]:
        return {h.get("authorization") for _, _, h, _ in self.requests}

    def bulk_doc_counts(self) -> list[int]:
        counts = []
        for method, path, _, body in self.requests:
            if path.endswith("/_bulk") and body:
                counts.append(sum(1 for line in body.splitlines() if line.startswith((b'{"create"', b'{"index"'))))
        return counts


# ---------------------------------------------------------------------------------------------
# connection options, no node needed


def test_repeated_es_url_gives_every_host_to_the_client():
    client = es_settings("--es-url", "http://10.0.0.1:9200", "--es-url", "https://es-b.example:9243").client()
    nodes = sorted((n.config.scheme, n.config.host, n.config.port) for n in client.transport.node_pool.all())
    assert nodes == [("http", "10.0.0.1", 9200), ("https", "es-b.example", 9243)]


def test_es_url_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("KUBEHUNT_ES_URL", "http://10.1.2.3:9201")
    assert es_settings().hosts == ("http://10.1.2.3:9201",)
    monkeypatch.delenv("KUBEHUNT_ES_URL")
    assert es_settings().hosts == ("http://127.0.0.1:9200",)


def test_tls_options_reach_the_connection(tmp_path):
    import certifi

    key, cert = tmp_path / "client.key", tmp_path / "client.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kubehunt-test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    settings = es_settings("--es-url", "https://es.example:9243", "--es-ca-certs", certifi.where(),
                           "--es-client-cert", cert, "--es-client-key", key)
    config = settings.client().transport.node_pool.all()[0].config
    assert config.verify_certs is True
    assert config.ca_certs == certifi.where()
    assert (config.client_cert, config.client_key) == (str(cert), str(key))
    unverified = es_settings("--es-url", "https://es.example:9243", "--no-es-verify-certs").client()
    assert unverified.transport.node_pool.all()[0].config.verify_certs is False


@pytest.mark.parametrize("option", ["--es-password-file", "--es-api-key-file", "--es-bearer-token-file",
                                    "--es-ca-certs", "--es-client-cert", "--es-client-key"])
def test_a_missing_file_option_is_a_configuration_error_naming_it(tmp_path, capsys, option):
    missing = tmp_path / "nope.pem"
    assert run_cli("run", "--audit", DEMO / "audit.log", "--output-dir", tmp_path, option, missing) == 2
    err = capsys.readouterr().err
    assert f"{option}" in err and "no such file" in err
    if option.endswith(("password-file", "api-key-file", "token-file")):
        # The value given where a secret file belongs may be the secret itself: never printed.
        assert str(missing) not in err


@pytest.mark.parametrize("option", ["--es-batch-docs", "--es-batch-bytes", "--es-concurrency"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_batch_and_concurrency_must_be_positive(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        run_cli("run", "--audit", DEMO / "audit.log", "--output-dir", tmp_path, f"{option}={value}")
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "setup"])
def test_credentials_in_the_url_are_refused_and_never_printed(tmp_path, capsys, caplog, command):
    secret = "s3cr3t-in-url-4242"
    argv = ["--es-url", f"https://elastic:{secret}@127.0.0.1:1"]
    if command == "run":
        argv = ["run", "--audit", str(DEMO / "audit.log"), *argv]
    else:
        argv = ["setup", *argv]
    assert run_cli(*argv) == 2
    out, err = capsys.readouterr()
    assert "--es-url must not carry credentials" in err
    assert secret not in out + err + caplog.text


def test_es_timeout_bounds_each_request():
    """A server that accepts and never answers: the request fails after --es-timeout, not the default 60 s."""
    from elasticsearch import ConnectionTimeout

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        client = es_settings("--es-url", f"http://127.0.0.1:{silent.getsockname()[1]}", "--es-timeout", "2").client()
        started = time.monotonic()
        with pytest.raises(ConnectionTimeout):
            client.info()
        assert time.monotonic() - started < 30
    finally:
        silent.close()


# ---------------------------------------------------------------------------------------------
# credentials on the wire (recording proxy in front of the real node, whose security is off: the
# node ignores the header, the proxy sees exactly what the client would send to a secured cluster)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.elasticsearch
@pytest.mark.parametrize("env,files,user,expected", [
    ({"KUBEHUNT_ES_BEARER_TOKEN": "tok-env"}, {}, None, "Bearer tok-env"),
    ({}, {"--es-bearer-token-file": "tok-file"}, None, "Bearer tok-file"),
    ({"KUBEHUNT_ES_API_KEY": "key-env"}, {}, None, "ApiKey key-env"),
    # a file beats the environment variable of the same secret
    ({"KUBEHUNT_ES_API_KEY": "key-env"}, {"--es-api-key-file": "key-file"}, None, "ApiKey key-file"),
    ({"KUBEHUNT_ES_PASSWORD": "pw-env"}, {}, "alice", _basic("alice", "pw-env")),
    ({"KUBEHUNT_ES_PASSWORD": "pw-env"}, {"--es-password-file": "pw-file"}, "alice", _basic("alice", "pw-file")),
    # precedence: API key, then bearer token, then basic auth
    ({"KUBEHUNT_ES_API_KEY": "key-env", "KUBEHUNT_ES_BEARER_TOKEN": "tok-env", "KUBEHUNT_ES_PASSWORD": "pw"},
     {}, "alice", "ApiKey key-env"),
    ({"KUBEHUNT_ES_BEARER_TOKEN": "tok-env", "KUBEHUNT_ES_PASSWORD": "pw"}, {}, "alice", "Bearer tok-env"),
])
def test_credentials_come_from_env_or_files_in_precedence(es_url, monkeypatch, tmp_path, env, files, user,
                                                          expected):
    recorder = Recorder(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = []
    for option, value in files.items():
        path = tmp_path / option.strip("-")
        path.write_text(value + "\n")  # the trailing newline of `echo x > file` is not part of the secret
        argv += [option, path]
    if user:
        argv += ["--es-username", user]
    with FaultProxy(es_url) as proxy:
        es_settings("--es-url", proxy.url, *argv).client().info()
    assert recorder.authorization() == {expected}


def test_a_username_without_a_password_fails_fast_naming_where_to_put_it(capsys):
    assert run_cli("setup", "--es-url", "http://127.0.0.1:1", "--es-username", "alice") == 2
    assert "$KUBEHUNT_ES_PASSWORD or --es-password-file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the sink's batching, through a whole run on the real node


AUDIT_LINES = 50


@pytest.fixture
def run_via_proxy(es_url, es, unique_name, monkeypatch, tmp_path):
    recorder = Recorder(monkeypatch)
    audit = tmp_path / "audit.log"
    audit.write_bytes(b"".join((DEMO / "audit.log").read_bytes().splitlines(keepends=True)[:AUDIT_LINES]))

    def run(*argv):
        with FaultProxy(es_url) as proxy:
            code = run_cli("run", "--audit", audit, "--no-correlation",
                           "--es-url", proxy.url,
                           "--audit-index", f"logs-kubernetes.audit_logs-{unique_name}",
                           "--dead-letter-index", f"kubehunt-dead-letters-{unique_name}",
                           "--summary-json", tmp_path / "summary.json", *argv)
        return code, json.loads((tmp_path / "summary.json").read_text()), recorder

    return run


@pytest.mark.elasticsearch
def test_es_batch_docs_caps_each_bulk_request(run_via_proxy, es, unique_name):
    code, summary, recorder = run_via_proxy("--es-batch-docs", "7")
    assert code == 0 and summary["balanced"] is True
    counts = recorder.bulk_doc_counts()
    assert sum(counts) == AUDIT_LINES == summary["written"]["indexed"]["audit"]
    assert max(counts) == 7 and len(counts) >= -(-AUDIT_LINES // 7)
    index = f"logs-kubernetes.audit_logs-{unique_name}"
    es.indices.refresh(index=index)
    assert es.count(index=index)["count"] == AUDIT_LINES


@pytest.mark.elasticsearch
def test_es_batch_bytes_caps_each_bulk_request(run_via_proxy):
    one_doc = max(len(line) for line in (DEMO / "audit.log").read_bytes().splitlines()[:AUDIT_LINES])
    code, summary, recorder = run_via_proxy("--es-batch-bytes", str(one_doc))
    assert code == 0 and summary["balanced"] is True
    counts = recorder.bulk_doc_counts()
    # every document is at least a third of the largest line: never more than 3 per request
    assert sum(counts) == AUDIT_LINES and max(counts) <= 3 and len(counts) > AUDIT_LINES // 3
    bodies = [b for m, p, _, b in recorder.requests if p.endswith("/_bulk") and b]
    assert all(len(b) <= 3 * one_doc for b in bodies)


@pytest.mark.elasticsearch
@pytest.mark.parametrize("concurrency", [1, 3])
def test_es_concurrency_bounds_bulk_requests_in_flight(run_via_proxy, monkeypatch, concurrency):
    in_flight, peak, lock, mine = [0], [0], threading.Lock(), threading.local()
    reading_before, sending_before = faultproxy._read_request, faultproxy._send_response

    # Each proxy connection serves one request at a time: a bulk request is in flight from the
    # proxy reading it to the proxy answering it.
    def reading(reader):
        request = reading_before(reader)
        mine.bulk = request is not None and request[1].split("?", 1)[0].endswith("/_bulk")
        if mine.bulk:
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(1.0)  # a slow node: the sink has long submitted its next batches meanwhile
        return request

    def answering(sock, *args):
        sending_before(sock, *args)
        if getattr(mine, "bulk", False):
            mine.bulk = False
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(faultproxy, "_read_request", reading)
    monkeypatch.setattr(faultproxy, "_send_response", answering)
    code, summary, _ = run_via_proxy("--es-batch-docs", "10", "--es-concurrency", str(concurrency))
    assert code == 0 and summary["balanced"] is True
    # 50 documents in 5 requests: with 3 allowed at once they overlap, with 1 they never do
    assert peak[0] == (1 if concurrency == 1 else 3)
