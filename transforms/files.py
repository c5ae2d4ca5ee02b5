"""The `--output-dir` sink: NDJSON files holding exactly the documents that would be indexed.

Each element is written where it is processed, durably, before the DoFn returns: a chunk of
``SinkItem`` becomes one file, single items (dead letters, incidents) are batched per bundle into
one file written at the end of the bundle, or as soon as the batch holds ``SINGLES_BYTES`` (a
bundle can be a whole input: the local runner's, whose incidents can be hundreds of megabytes).
A file is written under a temporary name and renamed into place, and its name is a digest of the
ids it holds, so a retried bundle (the same elements in the same order) rewrites the same files
instead of adding some, and a reader never sees half a file.

There is no finalisation step. Beam's ``WriteToText`` renames its bundle files in a separate
stage fed by the names the bundles report; the ``multi_processing`` runner lost the output of
whole chunks on the way to it (issue 9: 3 chunks of 400 and 21 of 201 in two runs). Here nothing
happens after the write, so there is nothing to lose.

Files: ``DIR/NAME-KIND-DIGEST.ndjson`` (sorted by name within a kind = no particular order;
consumers that need an order sort by ``@timestamp`` or ``event.id``).
"""
from __future__ import annotations

import hashlib
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.records import METRICS_NAMESPACE


def _digest(items) -> str:
    h = hashlib.blake2b(digest_size=12)
    for item in items:
        h.update(item.id.encode())
        h.update(b"\n")
    return h.hexdigest()


def write_atomically(path: str, items) -> None:
    """Write the bodies of ``items`` as NDJSON to ``path`` (temporary name, then rename)."""
    directory, name = path.rsplit("/", 1) if "/" in path else (".", path)
    temporary = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
    handle = FileSystems.create(temporary)
    try:
        try:
            for item in items:
                handle.write(item.body)
                handle.write(b"\n")
        finally:
            handle.close()
        FileSystems.rename([temporary], [path])
    except BaseException:
        # A failed write (disk full, file too large, ...) leaves nothing behind: no half file, no
        # temporary file in the user's output folder.
        try:
            FileSystems.delete([temporary])
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise


SINGLES_BYTES = 16 * 1024 * 1024


class WriteNdjsonFn(beam.DoFn):
    """Chunks (lists of SinkItem) -> one file each; single SinkItems -> a file per bundle (or per
    ``SINGLES_BYTES`` of them)."""

    def __init__(self, directory: str, name: str):
        self._directory = directory
        self._name = name

    def setup(self):
        try:
            FileSystems.mkdirs(self._directory)
        except OSError:
            pass  # exists (another worker made it); a real problem shows at the first write
        self._counters: dict = {}

    def _write(self, items: list) -> None:
        kind = items[0].kind
        write_atomically(FileSystems.join(self._directory, f"{self._name}-{kind}-{_digest(items)}.ndjson"), items)
        counter = self._counters.get(kind)
        if counter is None:
            counter = self._counters[kind] = Metrics.counter(METRICS_NAMESPACE, f"written.{kind}")
        counter.inc(len(items))

    def start_bundle(self):
        self._singles: dict[str, list] = {}
        self._single_bytes: dict[str, int] = {}

    def process(self, element):
        if isinstance(element, list):
            if element:
                self._write(element)
        else:
            kind = element.kind
            self._singles.setdefault(kind, []).append(element)
            size = self._single_bytes[kind] = self._single_bytes.get(kind, 0) + len(element.body)
            if size >= SINGLES_BYTES:
                self._write_singles(kind)

    def _write_singles(self, kind: str) -> None:
        # Sorted so that the same items make the same file whatever order they came in.
        self._write(sorted(self._singles.pop(kind), key=lambda i: i.id))
        self._single_bytes.pop(kind, None)

    def finish_bundle(self):
        for kind in list(self._singles):
            self._write_singles(kind)


class WriteNdjson(beam.PTransform):
    """SinkItems (chunks or single) -> DIR/NAME-KIND-DIGEST.ndjson; counts ``written.<kind>``."""

    def __init__(self, directory: str, name: str):
        super().__init__()
        self._directory = directory
        self._name = name

    def expand(self, items):
        return items | "WriteFiles" >> beam.ParDo(WriteNdjsonFn(self._directory, self._name))
