"""Validate a run's destinations and inputs once, in the driver, before the pipeline starts.

A configuration that cannot work must fail here with exit 2 and the option's name, not as an exit 1
with a Beam traceback from a worker (or, worse, an exit 0 with every event dead-lettered):

- Elasticsearch destinations (``--audit-index`` ...): valid concrete index names (no ``_all``, no
  wildcards, no date math, Elasticsearch's naming rules), four different indices, and none caught
  by another destination's index template (an incidents index called ``logs-falco.alerts-x`` would
  become a Falco data stream);
- ``--output-dir``: a directory (or creatable as one) that we can write into;
- ``--hunts-dir``: every hunt compiles (the workers compile them again in ``setup()``);
- with ``--no-setup``: the node answers within ``--es-retry-deadline`` (``check_reachable``), else a
  one-line ``RunFailure`` (exit 1: the configuration may be right, the node is down).

Also here: ``clean_temp_dirs`` (a failed ``--output-dir`` run leaves no ``beam-temp-*`` behind) and
``describe_failure`` (a failed run is reported in one line, not a 100-line traceback).
"""
from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import re
import shutil
import tempfile
import time

from pipeline.options import ConfigError, RunConfig
from pipeline.summary import redact_url, redact_urls_in
from transforms.elasticsearch import EsSettings
from transforms.sources import ALL as SOURCE_REGISTRY

OPTION_OF = {**{s.name: s.index_option for s in SOURCE_REGISTRY}, "incidents": "--incidents-index",
             "dead_letters": "--dead-letter-index"}
# Which index template (mappings/templates/index/<name>.json) each event destination is meant for.
_TEMPLATE_OF = {s.name: s.index_template for s in SOURCE_REGISTRY}
# Elasticsearch's index name rules (docs: "Create index API", path parameters).
_FORBIDDEN_CHARS = set('\\/*?"<>| ,#:')
MAX_INDEX_NAME_BYTES = 255
log = logging.getLogger("kubehunt")


class RunFailure(RuntimeError):
    """The run could not be done (not a configuration error): exit 1 with this one-line message."""


def index_name_problem(name: str) -> str | None:
    """Why `name` cannot be a destination index / data stream, or None."""
    if not name:
        return "is empty"
    if name in ("_all", ".", ".."):
        return f"{name!r} is not a concrete index"
    bad = sorted(set(name) & _FORBIDDEN_CHARS)
    if bad:
        what = "wildcards/date math" if set(bad) & set("*?<>") else "characters"
        return f"{name!r} holds {what} {''.join(bad)!r} that a destination index cannot have"
    if name != name.lower():
        return f"{name!r} must be lowercase"
    if name[0] in "-_+":
        return f"{name!r} must not start with '-', '_' or '+'"
    if len(name.encode()) > MAX_INDEX_NAME_BYTES:
        return f"{name[:40]!r}... is longer than {MAX_INDEX_NAME_BYTES} bytes"
    return None


def _template_patterns() -> dict[str, list[str]]:
    import mappings

    out = {}
    for kind, template in _TEMPLATE_OF.items():
        body = json.loads(mappings.path("templates", "index", f"{template}.json").read_text())
        out[kind] = list(body["index_patterns"])
    return out


def validate_destinations(es: EsSettings) -> None:
    indices = dict(es.indices)
    for kind, name in indices.items():
        problem = index_name_problem(name)
        if problem:
            raise ConfigError(f"{OPTION_OF[kind]}: {problem}")
    seen: dict[str, str] = {}
    for kind, name in indices.items():
        if name in seen:
            raise ConfigError(f"{OPTION_OF[seen[name]]} and {OPTION_OF[kind]} are both {name!r}: "
                              "each destination needs its own index")
        seen[name] = kind
    for kind, name in indices.items():
        for other, patterns in _template_patterns().items():
            if other != kind and any(fnmatch.fnmatchcase(name, p) for p in patterns):
                raise ConfigError(f"{OPTION_OF[kind]} {name!r} matches the index template of "
                                  f"{OPTION_OF[other]} ({', '.join(patterns)}): it would get the wrong mappings")


def validate_output_dir(path: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.get_scheme(path):
        return  # a Beam filesystem (gs://, s3://): checked by the runner when it writes
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--output-dir {path}: exists and is not a directory")
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise ConfigError(f"--output-dir {path}: {existing} is not a directory")
    try:   # a real probe: os.access says yes to root on a read-only mount
        fd, probe = tempfile.mkstemp(prefix=".kubehunt-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"--output-dir {path}: cannot write into {existing}: {err.strerror}") from None


def validate_hunts(settings) -> None:
    """Compile every hunt now: a broken hunt file is a configuration error, not a worker crash."""
    from transforms.hunts import HuntError, load_catalogue

    try:
        load_catalogue(settings)
    except HuntError as err:
        raise ConfigError(f"--hunts-dir: {err}") from None


def validate_run(cfg: RunConfig) -> None:
    """Everything that can be checked before reading a line; raises ConfigError naming the option."""
    validate_destinations(cfg.es)
    if cfg.output_dir:
        validate_output_dir(cfg.output_dir)
    if cfg.summary_json and os.path.isdir(cfg.summary_json):
        raise ConfigError(f"--summary-json {cfg.summary_json}: is a directory, not a file")
    validate_hunts(cfg.process.hunts)


def check_reachable(es: EsSettings, deadline_s: float | None = None) -> str:
    """Wait (retrying) until a node answers, at most ``--es-retry-deadline``; returns its version."""
    from elasticsearch import ApiError, TransportError

    from transforms.elasticsearch import describe_error

    deadline = time.monotonic() + (es.retry_deadline if deadline_s is None else deadline_s)
    delay, last = 0.2, ""
    client = es.client()
    # The transport warns at every failed attempt; our one error line below says it all.
    pool_log = logging.getLogger("elastic_transport.node_pool")
    pool_level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        while True:
            try:
                return client.info().body["version"]["number"]
            except (ApiError, TransportError) as err:
                if isinstance(err, ApiError) and err.status_code in (401, 403):
                    raise RunFailure(f"Elasticsearch refused the credentials: {describe_error(err)}") from None
                last = describe_error(err)
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    finally:
        pool_log.setLevel(pool_level)
        client.close()
    hosts = ", ".join(redact_url(h) for h in es.hosts)
    raise RunFailure(f"Elasticsearch at {hosts} did not answer within --es-retry-deadline "
                     f"({es.retry_deadline:g}s): {redact_urls_in(last)}")


def temp_dirs(output_dir: str | None) -> set[str]:
    """The ``beam-temp-*`` folders Beam's file sinks keep in ``output_dir`` while they write."""
    if not output_dir:
        return set()
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.get_scheme(output_dir) is None:   # local: Beam's match() does not list folders
        return {p for p in glob.glob(os.path.join(glob.escape(output_dir), "beam-temp-*")) if os.path.isdir(p)}
    try:
        found = FileSystems.match([FileSystems.join(output_dir, "beam-temp-*")])[0].metadata_list
    except Exception:  # noqa: BLE001 - nothing to clean (the folder may not exist)
        return set()
    return {m.path.rstrip("/") for m in found}


def clean_temp_dirs(output_dir: str | None, before: set[str]) -> list[str]:
    """Delete the ``beam-temp-*`` folders a failed run left (not those that were there before it)."""
    from apache_beam.io.filesystems import FileSystems

    left = sorted(temp_dirs(output_dir) - before)
    for path in left:
        try:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                FileSystems.delete([path])
        except Exception:  # noqa: BLE001 - best effort; the caller reports the run's own failure
            log.warning("could not delete %s after the failed run", path)
    return left


_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Failure)): (.+)$")


def describe_failure(err: BaseException) -> str:
    """One line for a failed run: the innermost ``SomeError: message`` Beam's wrapped traceback names."""
    text = str(err)
    found = None
    for line in text.splitlines():
        match = _EXC_LINE.match(line.strip())
        if match:
            found = f"{match.group(1)}: {match.group(2)}"
    found = found or f"{type(err).__name__}: {(text.splitlines() or [''])[0]}"
    found = re.sub(r" \[while running '[^']*'\]$", "", found)
    return redact_urls_in(found)[:600]
