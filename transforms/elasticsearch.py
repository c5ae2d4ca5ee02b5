"""Elasticsearch sink: bulk `create` with deterministic ids, retries, and per-item dead letters.

Beam retries bundles and backfills are re-run, so every write is idempotent: documents carry a
deterministic `_id` and are sent with `op_type=create`; a 409 (already there) counts as written
(``already_present``). Permanent per-item errors (mapping conflicts, ...) go to the dead-letter index
with the reason. 429 / 5xx / connection errors are retried with exponential backoff and jitter until
a deadline; past it the bundle fails so that Beam retries it (safe, because ids are deterministic).

The client is created in ``setup()`` on the worker from plain ``EsSettings``; secrets are read there
from the environment or files named in the settings, never carried in argv or pickled in clear.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

from transforms.records import AUDIT, FALCO, METRICS_NAMESPACE, dead_letter

DEFAULT_INDICES = {
    AUDIT: "logs-kubernetes.audit_logs-default",
    FALCO: "logs-falco.alerts-default",
    "incidents": "kubehunt-incidents",
    "dead_letters": "kubehunt-dead-letters",
}


class EsConfigError(ValueError):
    """Connection settings that cannot work; the message says what to fix."""


@dataclass(frozen=True)
class EsSettings:
    """Everything needed to build a client and write; plain data (picklable, secret-free)."""
    hosts: tuple[str, ...] = ("http://127.0.0.1:9200",)
    api_key_env: str = "KUBEHUNT_ES_API_KEY"
    api_key_file: str | None = None
    username: str | None = None
    password_env: str = "KUBEHUNT_ES_PASSWORD"
    password_file: str | None = None
    bearer_token_env: str = "KUBEHUNT_ES_BEARER_TOKEN"
    bearer_token_file: str | None = None
    ca_certs: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify_certs: bool = True
    request_timeout: float = 60.0
    batch_docs: int = 1000
    batch_bytes: int = 5 * 1024 * 1024
    retry_deadline: float = 300.0
    indices: tuple[tuple[str, str], ...] = tuple(DEFAULT_INDICES.items())

    def index_for(self, kind: str) -> str:
        return dict(self.indices)[kind]

    def _secret(self, env: str, file: str | None) -> str | None:
        if file:
            try:
                with open(file, encoding="utf-8") as fh:
                    return fh.read().strip()
            except OSError as err:
                raise EsConfigError(f"cannot read secret file {file}: {err.strerror}") from None
        value = os.environ.get(env)
        return value or None

    def client(self):
        from elasticsearch import Elasticsearch

        kwargs: dict = {"request_timeout": self.request_timeout, "max_retries": 0,
                        "retry_on_timeout": False, "http_compress": False}
        if any(h.startswith("https") for h in self.hosts):
            kwargs["verify_certs"] = self.verify_certs
            if self.ca_certs:
                kwargs["ca_certs"] = self.ca_certs
            if self.client_cert:
                kwargs["client_cert"] = self.client_cert
                kwargs["client_key"] = self.client_key
            if not self.verify_certs:
                kwargs["ssl_show_warn"] = False
        api_key = self._secret(self.api_key_env, self.api_key_file)
        token = self._secret(self.bearer_token_env, self.bearer_token_file)
        password = self._secret(self.password_env, self.password_file)
        if api_key:
            kwargs["api_key"] = api_key
        elif token:
            kwargs["bearer_auth"] = token
        elif self.username:
            if password is None:
                raise EsConfigError(f"--es-username is set but no password: set ${self.password_env} "
                                    "or --es-password-file")
            kwargs["basic_auth"] = (self.username, password)
        return Elasticsearch(list(self.hosts), **kwargs)


RETRYABLE_STATUS = {429, 502, 503, 504}


class BulkWriteFn(beam.DoFn):
    """Buffer documents and write them with the bulk API; see the module docstring.

    Input elements: a chunk ``[(kind, doc_id, doc_bytes), ...]`` or one ``(kind, doc_id, doc_bytes)``.
    ``kind`` names the destination (audit, falco, incidents, dead_letters).
    """

    def __init__(self, settings: EsSettings):
        self._settings = settings

    def setup(self):
        self._client = self._settings.client()
        self._counters: dict = {}
        self._retries = Metrics.counter(METRICS_NAMESPACE, "es.retries")
        self._indices = dict(self._settings.indices)

    def start_bundle(self):
        self._buffer: list[tuple[str, str, bytes]] = []
        self._buffer_bytes = 0

    def process(self, element):
        items = element if isinstance(element, list) else [element]
        for item in items:
            self._buffer.append(item)
            self._buffer_bytes += len(item[2]) + 100
            if len(self._buffer) >= self._settings.batch_docs or self._buffer_bytes >= self._settings.batch_bytes:
                self._flush()

    def finish_bundle(self):
        self._flush()

    def teardown(self):
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    # -- internals ---------------------------------------------------------------------------

    def _count(self, name: str, kind: str, n: int = 1):
        """`written.<kind>`, `present.<kind>` (409: already there), `dead.index.<kind>`."""
        key = f"{name}.{kind}"
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = Metrics.counter(METRICS_NAMESPACE, key)
        counter.inc(n)

    def _flush(self):
        if not self._buffer:
            return
        pending = self._buffer
        self._buffer, self._buffer_bytes = [], 0
        deadline = time.monotonic() + self._settings.retry_deadline
        attempt = 0
        while pending:
            retry, dead = self._send(pending)
            for item, reason in dead:
                self._write_dead_letter(item, reason)
            if not retry:
                return
            attempt += 1
            self._retries.inc(len(retry))
            if time.monotonic() >= deadline:
                raise RuntimeError(f"Elasticsearch still failing after {self._settings.retry_deadline:.0f}s "
                                   f"({len(retry)} documents unsent); failing the bundle so the runner retries it")
            time.sleep(min(30.0, 0.5 * 2 ** min(attempt, 6)) * (0.5 + random.random()))
            pending = retry

    def _body(self, items) -> bytes:
        parts = []
        for kind, doc_id, body in items:
            action = {"create": {"_index": self._indices[kind], "_id": doc_id}}
            parts.append(orjson.dumps(action))
            parts.append(body)
        parts.append(b"")
        return b"\n".join(parts)

    def _send(self, items):
        """One bulk request. Returns (items to retry, [(item, permanent error)])."""
        from elasticsearch import ApiError, ConnectionError as EsConnectionError, ConnectionTimeout

        try:
            resp = self._client.bulk(operations=self._body(items))
        except (EsConnectionError, ConnectionTimeout):
            return items, []
        except ApiError as err:
            if err.status_code in RETRYABLE_STATUS or err.status_code >= 500:
                return items, []
            raise
        retry, dead = [], []
        for item, result in zip(items, resp["items"]):
            outcome = result.get("create") or next(iter(result.values()))
            status = outcome.get("status", 0)
            if status in (200, 201):
                self._count("written", item[0])
            elif status == 409:
                self._count("present", item[0])
            elif status in RETRYABLE_STATUS or status >= 500:
                retry.append(item)
            else:
                error = outcome.get("error", {})
                dead.append((item, f"{status} {error.get('type', '')}: {error.get('reason', '')}"))
        return retry, dead

    def _write_dead_letter(self, item, reason):
        kind, doc_id, body = item
        letter = dead_letter("index", reason, body, source=kind, origin=self._indices.get(kind, kind))
        letter["kubehunt"]["dead_letter"]["doc_id"] = doc_id
        retry, dead = self._send([("dead_letters", letter["event"]["id"], orjson.dumps(letter))])
        if retry or dead:
            raise RuntimeError(f"could not write a dead letter for document {doc_id}: {dead or 'unavailable'}")
        self._count("dead.index", kind)


class WriteToElasticsearch(beam.PTransform):
    """Chunks or single ``(kind, id, bytes)`` elements -> Elasticsearch (idempotent `create`)."""

    def __init__(self, settings: EsSettings):
        super().__init__()
        self._settings = settings

    def expand(self, pcoll):
        return pcoll | "BulkWrite" >> beam.ParDo(BulkWriteFn(self._settings))
