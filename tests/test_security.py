"""Connection security against a real node with security on: TLS with a self-signed CA, the `elastic`
password, API keys, bearer tokens, client certificates; secrets never show in output, logs,
exception text or the pickled sink.

The secure node is a second instance of the project's own script (`KUBEHUNT_ES_SECURE=1`) on port
9250, started for the session (~15-25 s) and stopped at its end unless it was already running.
"""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.setup import SetupError, ensure_destinations
from tests.es_helpers import ScriptNode, audit_items, chunks, ids_in, run_sink, settings_for
from transforms.elasticsearch import BulkWriteFn, EsSettings, EsWriteError

pytestmark = [pytest.mark.elasticsearch]

ROOT = Path(__file__).resolve().parent.parent
SECURE_ENV = {"KUBEHUNT_ES_SECURE": "1", "KUBEHUNT_ES_PORT": "9250", "KUBEHUNT_ES_INSTANCE": "h6secure",
              "KUBEHUNT_ES_HEAP": "512m"}
WRONG = "Wr0ng-pa55word-that-must-never-show"


class SecureNode:
    def __init__(self, home: Path):
        self.url = "https://127.0.0.1:9250"
        self.home = home
        self.password_file = str(home / "elastic-password")
        self.password = Path(self.password_file).read_text().strip()
        self.ca = str(home / "certs" / "ca.crt")
        self.client_cert = str(home / "certs" / "client.crt")
        self.client_key = str(home / "certs" / "client.key")

    def admin(self):
        from elasticsearch import Elasticsearch

        return Elasticsearch(self.url, ca_certs=self.ca, basic_auth=("elastic", self.password), request_timeout=60)


NODE = ScriptNode(SECURE_ENV)


@pytest.fixture(scope="session")
def secure_node():
    with NODE.running():
        yield SecureNode(Path(NODE.run("home").stdout.strip()))


def secure_settings(node: SecureNode, name: str, **overrides) -> EsSettings:
    base = dict(username="elastic", password_file=node.password_file, ca_certs=node.ca)
    base.update(overrides)
    return settings_for(node.url, name, **base)


def test_setup_and_writes_over_tls_with_a_password_file(secure_node, unique_name):
    settings = secure_settings(secure_node, unique_name)
    assert ensure_destinations(settings)["version"].startswith("8.")
    items = audit_items(400)
    counters = run_sink(settings, chunks(items, 150))
    assert counters["written.audit"] == 400
    with secure_node.admin() as admin:
        assert sorted(ids_in(admin, settings.index_for("audit"))) == sorted(i[1] for i in items)


def test_kubehunt_setup_takes_the_password_from_the_environment(secure_node, monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.setenv("KUBEHUNT_ES_PASSWORD", secure_node.password)
    code = main(["setup", "--es-url", secure_node.url, "--es-username", "elastic", "--es-ca-certs", secure_node.ca])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "ready" in out.out
    assert secure_node.password not in out.out + out.err


def test_an_api_key_from_the_environment(secure_node, unique_name, monkeypatch):
    with secure_node.admin() as admin:
        key = admin.security.create_api_key(name=f"kubehunt-test-{unique_name}", expiration="1h")["encoded"]
    monkeypatch.setenv("KUBEHUNT_ES_API_KEY", key)
    settings = settings_for(secure_node.url, unique_name, ca_certs=secure_node.ca)
    counters = run_sink(settings, [audit_items(50)])
    assert counters["written.audit"] == 50
    monkeypatch.setenv("KUBEHUNT_ES_API_KEY", "bm90OmFrZXk=")   # "not:akey"
    with pytest.raises(SetupError, match="401"):
        ensure_destinations(settings)


def test_a_bearer_token_from_a_file(secure_node, unique_name, tmp_path):
    with secure_node.admin() as admin:
        # The token service needs more than the basic licence: start the trial on this test-only node.
        if admin.license.get()["license"]["type"] == "basic":
            admin.license.post_start_trial(acknowledge=True)
        token = admin.security.get_token(grant_type="password", username="elastic",
                                         password=secure_node.password)["access_token"]
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    settings = settings_for(secure_node.url, unique_name, ca_certs=secure_node.ca, bearer_token_file=str(token_file))
    assert ensure_destinations(settings)["version"].startswith("8.")
    assert run_sink(settings, [audit_items(30)])["written.audit"] == 30


def test_a_client_certificate_signed_by_the_ca_is_accepted_and_a_rogue_one_refused(secure_node, unique_name, tmp_path):
    good = secure_settings(secure_node, unique_name, client_cert=secure_node.client_cert,
                           client_key=secure_node.client_key)
    assert ensure_destinations(good)["version"].startswith("8.")
    # The node verifies any certificate presented (client_authentication: optional): one from another
    # CA fails the handshake, which shows that the client certificate really is sent.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rogue",
                    "-keyout", str(tmp_path / "rogue.key"), "-out", str(tmp_path / "rogue.crt")],
                   check=True, capture_output=True)
    rogue = secure_settings(secure_node, unique_name, client_cert=str(tmp_path / "rogue.crt"),
                            client_key=str(tmp_path / "rogue.key"))
    with pytest.raises(SetupError, match="TLS handshake failed"):
        ensure_destinations(rogue)


def test_server_certificates_are_verified_by_default(secure_node, unique_name):
    unverified = secure_settings(secure_node, unique_name, ca_certs=None)
    with pytest.raises(SetupError, match="--es-ca-certs"):
        ensure_destinations(unverified)
    opted_out = secure_settings(secure_node, unique_name, ca_certs=None, verify_certs=False)
    assert ensure_destinations(opted_out)["version"].startswith("8.")


def test_a_wrong_password_is_reported_without_the_password(secure_node, unique_name, monkeypatch, caplog, capsys):
    monkeypatch.setenv("KUBEHUNT_ES_PASSWORD", WRONG)
    caplog.set_level(logging.DEBUG)   # every logger, including the client's and urllib3's
    settings = secure_settings(secure_node, unique_name, password_file=None)
    with pytest.raises(SetupError) as setup_err:
        ensure_destinations(settings)
    assert "authentication failed" in str(setup_err.value)
    fn = BulkWriteFn(settings)
    fn.setup()
    try:
        fn.start_bundle()
        fn.process(audit_items(5))
        with pytest.raises(EsWriteError) as write_err:
            fn.finish_bundle()
    finally:
        fn.teardown()
    assert "401" in str(write_err.value)
    out = capsys.readouterr()
    for text in (str(setup_err.value), repr(setup_err.value), str(write_err.value), repr(write_err.value),
                 caplog.text, out.out, out.err):
        assert WRONG not in text
    assert WRONG.encode() not in pickle.dumps(BulkWriteFn(settings))


def test_a_failing_run_never_prints_the_secret(secure_node, unique_name, tmp_path):
    """`kubehunt run` in a subprocess with a wrong password, verbose: the setup check and, with
    --no-setup, the sink itself fail; neither stderr nor stdout carries the password."""
    env = {k: v for k, v in os.environ.items() if k != "KUBEHUNT_ES_URL"} | {"KUBEHUNT_ES_PASSWORD": WRONG}
    audit = ROOT / "tests" / "data" / "demo" / "audit.log"
    base = [sys.executable, "-m", "pipeline.cli", "-v", "run", "--audit", str(audit), "--es-url", secure_node.url,
            "--es-username", "elastic", "--es-ca-certs", secure_node.ca, "--audit-index", f"h6-{unique_name}-audit",
            "--dead-letter-index", f"h6-{unique_name}-dl", "--incidents-index", f"h6-{unique_name}-inc",
            "--es-retry-deadline", "2s"]
    setup = subprocess.run(base, env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert setup.returncode == 2 and "authentication failed" in setup.stderr
    sink = subprocess.run(base + ["--no-setup"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert sink.returncode != 0 and "401" in sink.stderr
    for proc in (setup, sink):
        assert WRONG not in proc.stdout + proc.stderr


def test_an_unreachable_host_error_carries_no_secret(unique_name, monkeypatch):
    monkeypatch.setenv("KUBEHUNT_ES_PASSWORD", WRONG)
    settings = settings_for("https://127.0.0.1:1", unique_name, username="elastic")
    with pytest.raises(SetupError) as err:
        ensure_destinations(settings)
    assert "unreachable" in str(err.value) and WRONG not in str(err.value) + repr(err.value)


def test_credentials_in_the_url_are_refused():
    from pipeline.cli import main

    assert main(["setup", "--es-url", "https://elastic:" + WRONG + "@127.0.0.1:9250"]) == 2
