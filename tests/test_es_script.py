"""scripts/elasticsearch.sh fails early with a message that says what to fix."""
from __future__ import annotations

import os
import socket
import subprocess

from tests.conftest import ES_SCRIPT


def _script(tmp_path, *args, **env):
    full_env = {k: v for k, v in os.environ.items() if k != "KUBEHUNT_ES_URL"}
    full_env.update(KUBEHUNT_ES_HOME=str(tmp_path / "es"), XDG_CACHE_HOME=str(tmp_path / "cache"), **env)
    return subprocess.run(["bash", str(ES_SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=60)


def test_a_tarball_with_the_wrong_checksum_is_refused(tmp_path):
    bad = tmp_path / "elasticsearch-8.12.2-linux-x86_64.tar.gz"
    bad.write_bytes(b"\x1f\x8b not elasticsearch")
    proc = _script(tmp_path, "install", str(bad))
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / "es" / "elasticsearch-8.12.2").exists()


def test_a_missing_tarball_is_named(tmp_path):
    proc = _script(tmp_path, "install", str(tmp_path / "nope.tar.gz"))
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_start_on_a_taken_port_says_so(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        proc = _script(tmp_path, "start", KUBEHUNT_ES_PORT=str(port))
    assert proc.returncode != 0
    assert f"port {port} on 127.0.0.1 is already taken" in proc.stderr


def test_an_unreachable_external_cluster_is_reported_not_replaced(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        proc = _script(tmp_path, "start", KUBEHUNT_ES_URL=f"http://127.0.0.1:{port}")
    assert proc.returncode != 0
    assert "does not answer" in proc.stderr


def test_status_of_a_fresh_home_is_not_installed(tmp_path):
    proc = _script(tmp_path, "status")
    assert proc.returncode == 3 and "not installed" in proc.stdout
