"""Elasticsearch sink: idempotent bulk writes with back-pressure, retries and per-item dead letters.

Beam retries bundles and backfills are re-run, so every write is idempotent:

- events carry a deterministic ``_id`` and are sent with ``create``: a 409 means the document is
  already there (an earlier attempt or run wrote it) and counts as ``present.<kind>``;
- incidents (``SinkItem``s with a ``version``) are sent with ``index`` and an external version,
  so an older version never overwrites a newer one; a 409 on a stale or equal version is also
  ``present.<kind>``.

Whole-request failures (connection refused/reset, timeouts, 429, 5xx) and per-item 429/5xx are
retried with exponential backoff and full jitter until ``retry_deadline`` has passed since the batch
first failed; only then does the bundle fail, so the runner retries it (safe: see above). Permanent
per-item errors (mapping conflicts, ...) send the document to the dead-letter index with the error;
the dead-letter index is mapped so that a dead letter cannot itself be rejected
(``mappings/indices/kubehunt-dead-letters.json``).

Batches are cut by count and by bytes and sent by a small per-DoFn thread pool: at most
``concurrency`` bulk requests are in flight, and ``process`` blocks when they all are, which is the
back-pressure. Beam counters only work on the bundle's own thread, so the workers return tallies
that the bundle thread adds to the counters; ``finish_bundle`` waits for every request, so nothing
is acknowledged to the runner before Elasticsearch has acknowledged it.

Counters (namespace ``kubehunt``, read by ``pipeline.summary``): ``es.received.<kind>`` (items the
sink was given), ``written.<kind>``, ``present.<kind>``, ``dead.index.<kind>`` and ``es.retries``
(documents re-sent). Per destination: received = written + present + dead.index.

The client is created in ``setup()`` on the worker from plain ``EsSettings``; secrets are read there
from environment variables or files named in the settings: they are never in argv, never pickled,
and never put into log lines or exception messages.
"""
from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

from transforms.records import AUDIT, FALCO, METRICS_NAMESPACE, dead_letter
from transforms.sink import SinkItem
from transforms.sources import ALL as SOURCE_REGISTRY

log = logging.getLogger("kubehunt.elasticsearch")

INCIDENTS = "incidents"
DEAD_LETTERS = "dead_letters"

DEFAULT_INDICES = {
    **{s.name: s.default_index for s in SOURCE_REGISTRY},
    INCIDENTS: "kubehunt-incidents",
    DEAD_LETTERS: "kubehunt-dead-letters",
}

MAX_REASON_CHARS = 2000

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


_BULK_FILTER = "took,errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.reason"


class EsConfigError(ValueError):
    """Connection settings that cannot work; the message says what to fix."""


class EsWriteError(RuntimeError):
    """Elasticsearch refused or stayed unreachable past the deadline; fails the bundle."""


@dataclass(frozen=True)
class EsSettings:
    """Everything needed to build a client and write; plain data (picklable, secret-free).

    Secrets are referenced by the name of an environment variable or a file path, and resolved on
    the worker in ``client()``.
    """
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
    concurrency: int = 2
    retry_deadline: float = 300.0
    retry_initial: float = 0.2
    retry_max: float = 20.0
    indices: tuple[tuple[str, str], ...] = tuple(DEFAULT_INDICES.items())
    # Backfill re-runs: skip ids already anywhere in the data stream (transforms.dedupe).
    dedupe_existing: bool = False

    def index_for(self, kind: str) -> str:
        return dict(self.indices)[kind]

    def _secret(self, env: str, file: str | None) -> str | None:
        if file:
            try:
                with open(file, encoding="utf-8") as fh:
                    return fh.read().strip() or None
            except OSError as err:
                raise EsConfigError(f"cannot read secret file {file}: {err.strerror}") from None
        return os.environ.get(env) or None

    def client(self):
        """A client for the worker (or the driver's setup). Auth precedence: API key, bearer, basic."""
        from elasticsearch import Elasticsearch

        # The transport logs one INFO line per request: per bulk request on every worker (a
        # multi-process worker's root logger is at INFO). Unless someone asked for it, warnings only.
        transport_log = logging.getLogger("elastic_transport.transport")
        if transport_log.level == logging.NOTSET:
            transport_log.setLevel(logging.WARNING)
        kwargs: dict = {"request_timeout": self.request_timeout, "max_retries": 0,
                        "retry_on_timeout": False, "http_compress": False,
                        # one connection per concurrent bulk request, plus one for dead letters/setup
                        "connections_per_node": max(4, self.concurrency + 2)}
        if any(h.startswith("https") for h in self.hosts):
            kwargs["verify_certs"] = self.verify_certs
            if self.ca_certs:
                kwargs["ca_certs"] = self.ca_certs
            if self.client_cert:
                kwargs["client_cert"] = self.client_cert
                if self.client_key:
                    kwargs["client_key"] = self.client_key
            if not self.verify_certs:
                kwargs["ssl_show_warn"] = False
        api_key = self._secret(self.api_key_env, self.api_key_file)
        token = self._secret(self.bearer_token_env, self.bearer_token_file)
        if api_key:
            kwargs["api_key"] = api_key
        elif token:
            kwargs["bearer_auth"] = token
        elif self.username:
            password = self._secret(self.password_env, self.password_file)
            if password is None:
                raise EsConfigError(f"--es-username is set but no password: set ${self.password_env} "
                                    "or --es-password-file")
            kwargs["basic_auth"] = (self.username, password)
        return Elasticsearch(list(self.hosts), **kwargs)


def describe_error(err: BaseException) -> str:
    """A one-line description of a client error that never carries request headers or bodies.

    The client's own messages hold the URL (never credentials: ``--es-url`` refuses them) and the
    server's error type/reason; we keep only those.
    """
    from elasticsearch import ApiError, TransportError

    if isinstance(err, ApiError):
        info = err.info if isinstance(err.info, dict) else {}
        error = info.get("error") if isinstance(info.get("error"), dict) else {}
        reason = error.get("reason") or (err.message if isinstance(err.message, str) else "")
        return f"HTTP {err.status_code} {error.get('type', type(err).__name__)}: {reason}"[:500]
    if isinstance(err, TransportError):
        return f"{type(err).__name__}: {err.message}"[:500]
    return type(err).__name__


class _Batch:
    """Documents of one bulk request, with the request body built as they arrive."""
    __slots__ = ("items", "parts", "size")

    def __init__(self):
        self.items: list[tuple] = []
        self.parts: list[bytes] = []
        self.size = 0


class _BulkWriter:
    """The thread-safe part of the sink: send one batch until done; returns a tally of outcomes.

    Lives on the worker (built in ``BulkWriteFn.setup``), never pickled.
    """

    def __init__(self, settings: EsSettings, client):
        self._s = settings
        self._client = client
        self._indices = dict(settings.indices)
        self._rng = random.Random()
        self._lock = threading.Lock()

    def action(self, item) -> bytes:
        kind, doc_id = item[0], item[1]
        index = self._indices[kind]
        if len(item) > 3 and item[3] is not None:
            return orjson.dumps({"index": {"_index": index, "_id": doc_id, "version": int(item[3]),
                                           "version_type": "external"}})
        return orjson.dumps({"create": {"_index": index, "_id": doc_id}})

    def _sleep(self, attempt: int, deadline: float) -> None:
        # Jitter (a random 50-100% of the exponential step) keeps several workers from hammering a
        # recovering node in lock-step.
        with self._lock:
            jitter = self._rng.random()
        cap = min(self._s.retry_max, self._s.retry_initial * 2 ** min(attempt, 16))
        time.sleep(max(0.0, min(cap * (0.5 + jitter / 2), deadline - time.monotonic())))

    def send(self, items: list, body: bytes | None = None, depth: int = 0) -> collections.Counter:
        """Write ``items`` (body pre-built or not); retry what is retryable; dead-letter the rest."""
        from elasticsearch import ApiError, TransportError

        tally: collections.Counter = collections.Counter()
        deadline = None
        attempt = 0
        pending = items
        last_error = ""
        while pending:
            if body is None:
                body = b"".join(self.action(i) + b"\n" + i[2] + b"\n" for i in pending)
            try:
                resp = self._client.bulk(operations=body, filter_path=_BULK_FILTER)
            except ApiError as err:
                if err.status_code not in RETRYABLE_STATUS:
                    raise EsWriteError(f"Elasticsearch refused a bulk request of {len(pending)} documents: "
                                       f"{describe_error(err)}") from None
                retry, last_error = pending, describe_error(err)
            except TransportError as err:   # connection refused/reset, timeout, TLS
                retry, last_error = pending, describe_error(err)
            else:
                retry, dead = self._outcomes(pending, resp.body, tally)
                if dead:
                    self._dead_letter(dead, tally, depth)
                if retry:
                    last_error = "item-level 429/5xx"
            body = None
            if not retry:
                break
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._s.retry_deadline
            if now >= deadline:
                raise EsWriteError(f"Elasticsearch still failing after {self._s.retry_deadline:.0f}s "
                                   f"({len(retry)} documents unsent; last error: {last_error}); failing the "
                                   "bundle so that the runner retries it")
            tally["es.retries"] += len(retry)
            attempt += 1
            if attempt == 1 or attempt % 10 == 0:
                log.warning("Elasticsearch: retrying %d documents (attempt %d): %s", len(retry), attempt, last_error)
            self._sleep(attempt, deadline)
            pending = retry
        return tally

    @staticmethod
    def _outcomes(items, body, tally):
        if len(body.get("items", ())) != len(items):
            raise EsWriteError(f"bulk response has {len(body.get('items', ()))} items for {len(items)} documents")
        retry, dead = [], []
        for item, result in zip(items, body["items"]):
            outcome = next(iter(result.values()))
            status = outcome.get("status", 0)
            kind = item[0]
            if 200 <= status < 300:
                tally["written." + kind] += 1
            elif status == 409:
                # create: the id exists; external version: an equal or newer version exists.
                tally["present." + kind] += 1
            elif status in RETRYABLE_STATUS:
                retry.append(item)
            else:
                error = outcome.get("error") or {}
                reason = error.get("reason") or ""
                cause = (error.get("caused_by") or {}).get("reason")
                if cause and cause not in reason:
                    reason = f"{reason}: {cause}"
                # Elasticsearch quotes the offending value in its reason: keep the reason readable.
                if len(reason) > MAX_REASON_CHARS:
                    reason = reason[:MAX_REASON_CHARS] + "…"
                dead.append((item, f"{status} {error.get('type', 'error')}: {reason}"))
        return retry, dead

    def _dead_letter(self, dead, tally, depth):
        """Rejected documents -> the dead-letter index, with the error; counted as ``dead.index.<kind>``."""
        if depth >= 1:
            # Only our own dead letters are sent at depth 1, and the dead-letter mapping takes any of
            # them: a rejection here means the index was not set up (or was changed) by `kubehunt setup`.
            raise EsWriteError(f"the dead-letter index {self._indices[DEAD_LETTERS]} rejected a dead letter "
                               f"({dead[0][1][:500]}); run `kubehunt setup` or check its mapping")
        letters = []
        for (kind, doc_id, body, *_), reason in dead:
            # A rejected dead letter from upstream is wrapped like any other rejected document.
            letter = dead_letter("index", reason, body, source=kind, origin=self._indices[kind])
            letter["kubehunt"]["dead_letter"]["doc_id"] = str(doc_id)
            letters.append(SinkItem(DEAD_LETTERS, letter["event"]["id"], orjson.dumps(letter)))
        tally.update(self.send(letters, depth=depth + 1))
        for (kind, *_), _reason in dead:
            tally["dead.index." + kind] += 1


class BulkWriteFn(beam.DoFn):
    """Buffer documents into bulk requests sent by a bounded thread pool; see the module docstring.

    Input elements: a chunk ``[SinkItem, ...]`` or one ``SinkItem`` (``transforms.sink``).
    ``kind`` names the destination (audit, falco, incidents, dead_letters).
    """

    def __init__(self, settings: EsSettings):
        self._settings = settings

    def setup(self):
        self._client = self._settings.client()
        self._writer = _BulkWriter(self._settings, self._client)
        self._pool = ThreadPoolExecutor(max_workers=self._settings.concurrency, thread_name_prefix="kubehunt-bulk")
        self._counters: dict = {}
        self._prefixes: dict[str, bytes] = {
            kind: b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":'
            for kind, index in self._settings.indices}
        self._dedupe = None
        if self._settings.dedupe_existing:
            from transforms.dedupe import ExistingIds
            self._dedupe = ExistingIds(self._client, dict(self._settings.indices))

    def start_bundle(self):
        self._batch = _Batch()
        self._inflight: collections.deque[Future] = collections.deque()
        self._received: collections.Counter = collections.Counter()

    def process(self, element):
        items = element if isinstance(element, list) else [element]
        if self._dedupe is not None:
            items = self._dedupe.drop_present(items, self._count)
        batch = self._batch
        prefixes = self._prefixes
        received = self._received
        for item in items:
            kind, doc_id, body = item[0], item[1], item[2]
            if kind not in prefixes:
                raise EsConfigError(f"no Elasticsearch destination for documents of kind {kind!r} "
                                    f"(known: {', '.join(prefixes)})")
            if len(item) > 3 and item[3] is not None:
                action = self._writer.action(item)
            else:
                action = prefixes[kind] + orjson.dumps(doc_id) + b"}}"
            size = len(action) + len(body) + 2
            if batch.items and batch.size + size > self._settings.batch_bytes:
                # A request never exceeds batch_bytes, unless one document alone does.
                self._submit()
                batch = self._batch
            batch.items.append(item)
            batch.parts.append(action)
            batch.parts.append(body)
            batch.size += size
            received[kind] += 1
            if len(batch.items) >= self._settings.batch_docs:
                self._submit()
                batch = self._batch

    def finish_bundle(self):
        self._submit()
        while self._inflight:
            self._harvest(self._inflight.popleft())
        for kind, n in self._received.items():
            self._count(f"es.received.{kind}", n)
        self._received.clear()

    def teardown(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    # -- internals ---------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1):
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(METRICS_NAMESPACE, name)
        counter.inc(n)

    def _submit(self):
        batch = self._batch
        if not batch.items:
            return
        self._batch = _Batch()
        parts = batch.parts
        parts.append(b"")
        body = b"\n".join(parts)
        # Back-pressure: never more than `concurrency` requests in flight (or queued) per DoFn.
        while len(self._inflight) >= self._settings.concurrency:
            done, _ = wait(self._inflight, return_when=FIRST_COMPLETED)
            for fut in list(done):
                self._inflight.remove(fut)
                self._harvest(fut)
        self._inflight.append(self._pool.submit(self._writer.send, batch.items, body))

    def _harvest(self, fut: Future):
        try:
            tally = fut.result()
        except BaseException:
            # Fail the bundle, but first let the other requests finish so no thread outlives it.
            for other in self._inflight:
                other.cancel()
            wait(self._inflight)
            self._inflight.clear()
            raise
        for name, n in tally.items():
            self._count(name, n)


class WriteToElasticsearch(beam.PTransform):
    """Chunks or single ``SinkItem`` elements -> Elasticsearch (idempotent)."""

    def __init__(self, settings: EsSettings):
        super().__init__()
        self._settings = settings

    def expand(self, pcoll):
        return pcoll | "BulkWrite" >> beam.ParDo(BulkWriteFn(self._settings))
