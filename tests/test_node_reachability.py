"""`--no-setup` waits for the node (`check_reachable`) and then says in one line what it found: the
version of a node that answers, "refused the credentials" for 401/403 (no retrying), every host
named when none answers. Checked against a stub HTTP server that answers like Elasticsearch's
root endpoint, so no node is needed; a failed run's clean-up keeps the `beam-temp-*` folders that
were there before it."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.validate import RunFailure, check_reachable, clean_temp_dirs, temp_dirs
from transforms.elasticsearch import EsSettings


def _stub(status: int, body: dict):
    """A server whose every GET gets `status` and `body`, with the header the client checks."""
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            calls.append(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


@pytest.fixture
def stub():
    servers = []

    def start(status: int, body: dict):
        server, calls = _stub(status, body)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}", calls

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


INFO = {"name": "stub", "cluster_name": "c", "version": {"number": "8.12.2", "build_flavor": "default"},
        "tagline": "You Know, for Search"}


def test_a_node_that_answers_gives_its_version(stub):
    url, calls = stub(200, INFO)
    assert check_reachable(EsSettings(hosts=(url,)), deadline_s=5) == "8.12.2"
    assert calls == ["/"]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_at_once_saying_so(stub, status):
    url, calls = stub(status, {"error": {"type": "security_exception", "reason": "missing authentication"},
                               "status": status})
    started = time.monotonic()
    with pytest.raises(RunFailure) as err:
        check_reachable(EsSettings(hosts=(url,)), deadline_s=30)
    assert str(err.value) == (f"Elasticsearch refused the credentials: HTTP {status} security_exception: "
                              "missing authentication")
    assert len(calls) == 1 and time.monotonic() - started < 10   # no retrying until the deadline


def test_a_server_error_is_retried_until_the_deadline_and_named(stub):
    url, calls = stub(503, {"error": {"type": "unavailable", "reason": "starting"}, "status": 503})
    with pytest.raises(RunFailure) as err:
        check_reachable(EsSettings(hosts=(url,), retry_deadline=2.0))
    assert str(err.value) == (f"Elasticsearch at {url} did not answer within --es-retry-deadline (2s): "
                              "HTTP 503 unavailable: starting")
    assert len(calls) >= 2   # 0.2 s, then 0.4 s between attempts: at least one retry in 2 s


def test_every_host_is_named_when_none_answers():
    hosts = (f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RunFailure) as err:
        check_reachable(EsSettings(hosts=hosts, retry_deadline=0.1))
    assert str(err.value).startswith(f"Elasticsearch at {hosts[0]}, {hosts[1]} did not answer within "
                                     "--es-retry-deadline (0.1s): ")


def test_a_failed_runs_clean_up_deletes_only_the_temp_folders_it_left(tmp_path):
    (tmp_path / "beam-temp-earlier").mkdir()
    (tmp_path / "beam-temp-not-a-folder").write_text("x")
    (tmp_path / "events-00000-of-00001.ndjson").write_text("{}\n")
    before = temp_dirs(str(tmp_path))
    assert before == {str(tmp_path / "beam-temp-earlier")}
    for name in ("beam-temp-events-1", "beam-temp-incidents-2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part").write_text("half written")
    left = clean_temp_dirs(str(tmp_path), before)
    assert left == [str(tmp_path / "beam-temp-events-1"), str(tmp_path / "beam-temp-incidents-2")]
    assert sorted(os.listdir(tmp_path)) == ["beam-temp-earlier", "beam-temp-not-a-folder",
                                            "events-00000-of-00001.ndjson"]


def test_no_output_dir_has_no_temp_folders():
    assert temp_dirs(None) == set() and clean_temp_dirs(None, set()) == []
