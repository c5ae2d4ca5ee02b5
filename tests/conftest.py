"""Shared fixtures: the real Elasticsearch node, the third-party samples, pipeline helpers.

Elasticsearch tests run against a real node: `KUBEHUNT_ES_URL` when it is set and answers, else the
project's own `scripts/elasticsearch.sh start` (idempotent; installs on first use). If neither works
the tests fail with the script's message: they never pass without the real server.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

# Property tests explore new examples on a developer's machine; in CI (CI=true) they replay a fixed
# derivation, so a landing never hinges on the luck of the draw (failures found locally are kept in
# .hypothesis/ and become tests).
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("KUBEHUNT_SHARED_DATA", ROOT.parent / "shared" / "data"))
ES_SCRIPT = ROOT / "scripts" / "elasticsearch.sh"


# Under CI a missing prerequisite (the samples folder, jq, sysdig) fails the run naming it: a whole
# group of tests turning into one skip would leave CI green without having checked anything.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Fail (under CI=true) or skip (elsewhere) the current test because `what` is absent."""
    if IN_CI:
        pytest.fail(f"CI=true and {what}", pytrace=False)
    pytest.skip(what)


def shared(*parts: str) -> Path:
    """A path in ../shared/data; when the folder is absent, skips the test with the reason (under
    CI=true, fails it)."""
    path = SHARED_DATA.joinpath(*parts)
    if not SHARED_DATA.is_dir():
        missing(f"third-party samples not found at {SHARED_DATA} (set KUBEHUNT_SHARED_DATA)")
    return path


def needs_tool(name: str, reason: str):
    """A mark for tests that run the external program `name`: outside CI they are skipped with
    `reason` when it is not on PATH; under CI=true they fail naming it (see pytest_runtest_setup)."""
    if shutil.which(name) is not None:
        return pytest.mark.needs_tool(name)
    if IN_CI:
        return pytest.mark.needs_tool(name, missing=f"{name} is not installed: {reason}")
    return pytest.mark.skipif(True, reason=f"{name} is not installed: {reason}")


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_tool(name): runs an external program (tests/conftest.py)")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_tool"):
        if mark.kwargs.get("missing"):
            pytest.fail(f"CI=true and {mark.kwargs['missing']}", pytrace=False)


@pytest.fixture(scope="session")
def es_url() -> str:
    url = os.environ.get("KUBEHUNT_ES_URL")
    if url:
        return url
    proc = subprocess.run(["bash", str(ES_SCRIPT), "start"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"could not start the local Elasticsearch:\n{proc.stderr[-3000:]}")
    return subprocess.run(["bash", str(ES_SCRIPT), "url"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="session")
def es(es_url):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=60)
    yield client
    client.close()


@pytest.fixture
def streams(es, unique_name):
    """This test's own event data streams (`logs-<dataset>-t<unique>`, matched by our index templates),
    by source name, with the templates installed."""
    from pipeline.setup import install_templates
    from transforms.sources import ALL

    install_templates(es)
    names = {src.name: f"logs-{src.dataset}-t{unique_name}" for src in ALL}
    yield names
    for name in names.values():
        es.options(ignore_status=404).indices.delete_data_stream(name=name)


@pytest.fixture
def unique_name(request):
    """A short unique lowercase token for index / data-stream names of one test. Afterwards, the data
    streams and indices whose names carry it are deleted, so the shared node (and an analyst's
    `logs-*` searches on it) only holds what the demo wrote."""
    name = uuid.uuid4().hex[:10]
    yield name
    if "es" in request.fixturenames:
        es = request.getfixturevalue("es").options(ignore_status=(400, 404))
        es.indices.delete_data_stream(name=f"*{name}*", expand_wildcards="all")
        es.indices.delete(index=f"*{name}*", expand_wildcards="all")
