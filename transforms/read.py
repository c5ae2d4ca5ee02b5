"""Read JSON-lines inputs (files, globs, directories; gzip/bz2/zstd by content) as chunks of lines.

Per-element cost dominates a Beam pipeline, so the unit of work here is a *chunk*: a tuple
``(source, origin, first_line_number, [line, ...])``; ``ReadChunksFn`` is the one reader, of a whole
file or (for ``transforms.split.ReadSplitChunks``) of a byte range. Parse, normalise and tag run fused over a chunk
(see ``transforms.process``); events become individual elements only where they must be grouped.

Oversized lines and unreadable or truncated files go to the dead-letter output with the reason;
lines already read from a truncated file are kept. Each file is read once however it was named
(``file_identity``), and its compression is told by its content (``sniff_compression``).
"""
from __future__ import annotations

import bz2
import gzip
import io
import os
import zlib
from typing import Iterable, Iterator

import apache_beam as beam
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.records import DEAD_LETTER, METRICS_NAMESPACE, dead_letter

Chunk = tuple  # (source: str, origin: str, first_line: int, lines: list[bytes])

DEFAULT_CHUNK_LINES = 1000
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024


class InputError(ValueError):
    """A configured input that cannot be used (nothing matches, unreadable): fail before running."""


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    """Turn directories into globs and check that every pattern matches at least one file.

    Runs at graph-construction time so a typo fails fast with a message naming the pattern,
    instead of an empty run that looks like a quiet day.
    """
    out: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "**")
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as err:  # noqa: BLE001 - any filesystem error is a configuration error here
            raise InputError(f"cannot list input {pattern!r}: {err}") from err
        files = [m for m in matched if not os.path.isdir(m.path)]
        if not files:
            raise InputError(f"input {pattern!r} matches no file")
        out.append(pattern)
    return out


def iter_lines(fileobj, max_line_bytes: int, first_line: int = 1,
               span: int | None = None) -> Iterator[tuple[int, bytes | None, bytes]]:
    """Yield (line_number, line, overflow_prefix), numbering from `first_line`. `line` is None for a
    line over the limit, in which case `overflow_prefix` holds its first bytes (the rest is skipped,
    not buffered). With `span`, only the lines that start within the next `span` bytes are read (a
    byte range of ``transforms.split``: its end is a line start)."""
    number = first_line - 1
    consumed = 0
    while span is None or consumed < span:
        line = fileobj.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        consumed += len(line)
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            prefix = line[:4096]
            while True:  # drain the rest of the oversized line without holding it
                rest = fileobj.readline(1 << 20)
                consumed += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None, prefix
            continue
        yield number, line, b""


class _RawAdapter(io.RawIOBase):
    """Beam's file handles have no `readline(limit)`; a BufferedReader over this has.

    ``prefix`` holds the bytes already read from the handle to sniff its compression."""

    def __init__(self, handle, prefix: bytes = b""):
        self._handle = handle
        self._prefix = prefix

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n], self._prefix = self._prefix[:n], self._prefix[n:]
            return n
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()


class _ZstdRaw(io.RawIOBase):
    """zstd frames decoded one after another; a stream that ends inside a frame raises EOFError.

    The zstandard package's own stream reader ends quietly at a cut, so a truncated ``.zst`` lost its
    tail as a mangled "parse" dead letter; this keeps the decoded lines and reports the cut instead.
    """

    _BLOCK = 1 << 17

    def __init__(self, raw):
        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._obj = self._new()
        self._in_frame = False   # bytes of the current frame consumed and its end not yet seen
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            data = self._raw.read(self._BLOCK)
            if not data:
                if self._in_frame:
                    raise EOFError("zstd stream ended inside a frame (truncated)")
                return 0
            while data:
                self._in_frame = True
                out = self._obj.decompress(data)
                self._pending += out
                if self._obj.eof:   # a frame ended; what follows is the next frame (or padding)
                    data = self._obj.unused_data
                    self._obj, self._in_frame = self._new(), False
                else:
                    data = b""
        n = min(len(buffer), len(self._pending))
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ClosingBoth:
    """A decoder over a handle it does not own: closing it closes both."""

    def __init__(self, decoder, handle):
        self._decoder, self._handle = decoder, handle
        self.readline = decoder.readline

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self._decoder.close()
        finally:
            self._handle.close()


# Compression is told by content, never by the name: a plain-text file called `.gz` is text, a gzip
# file called `.log` is gzip. (Rotation tools, hand copies and misnamed exports all do this.)
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstd"))


def sniff_compression(head: bytes) -> str | None:
    """"gzip", "bzip2", "zstd" from a file's first bytes, or None for anything else (read as text)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            # "BZh" is also plain text; a bzip2 header goes on with a block size digit and a block magic.
            if name == "bzip2" and not (len(head) >= 10 and head[3:4].isdigit()
                                        and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")):
                continue
            return name
    return None


def open_input(path: str):
    """Open `path` for reading lines, decompressing by its content (see ``sniff_compression``).

    Python's own decoders (not Beam's), and our zstd frame reader, so that a truncated archive raises
    EOFError instead of ending quietly: a half-written rotation must show up as a dead letter, not as
    a short day. All decode in small blocks, so the lines before a cut are kept (bzip2 can only decode
    whole blocks of up to 900 kB: the lines of an incomplete last block cannot be recovered by anyone).
    """
    handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    head = b""
    while len(head) < 10:
        more = handle.read(10 - len(head))
        if not more:
            break
        head += more
    raw = io.BufferedReader(_RawAdapter(handle, head), 1 << 20)
    kind = sniff_compression(head)
    if kind == "gzip":
        return _ClosingBoth(gzip.GzipFile(fileobj=raw), raw)
    if kind == "bzip2":
        return _ClosingBoth(bz2.BZ2File(raw), raw)
    if kind == "zstd":
        return io.BufferedReader(_ZstdRaw(raw), 1 << 20)
    return raw


def file_identity(path: str):
    """(identity, path): one identity for every spelling of the same file.

    Local files: (device, inode), so `corpus/x`, `./corpus/x`, `/abs/corpus/../corpus/x`, a symlink
    and a hard link are one file; the path becomes the resolved one (the same for every spelling, so
    dead-letter origins and ids do not depend on how the file was named). Other Beam filesystems
    (gs://, s3://, ...) have no links or relative spellings: the path is the identity.
    """
    if FileSystems.get_scheme(path) is not None:
        return ("path", path), path
    resolved = os.path.realpath(path)
    try:
        st = os.stat(resolved)
    except OSError:   # vanished since the match: the read reports it
        return ("path", resolved), resolved
    return ("inode", st.st_dev, st.st_ino), resolved


def _open_range(path: str, start: int):
    """An uncompressed file positioned at byte `start` (a split's start: a line start)."""
    handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    handle.seek(start)
    return handle


class ReadChunksFn(beam.DoFn):
    """Read one file into chunks of lines (``read`` also reads a byte range: ``transforms.split``).

    Blank lines are counted, not emitted; oversized lines are dead-lettered. Inside a chunk either
    keeps its place as an empty placeholder, so ``first + offset`` stays the line number (the
    per-event stage skips placeholders); a chunk never starts with one.
    """

    def __init__(self, source: str, chunk_lines: int = DEFAULT_CHUNK_LINES,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self._source = source
        self._chunk_lines = chunk_lines
        self._max_line_bytes = max_line_bytes

    def setup(self):
        self._lines = Metrics.counter(METRICS_NAMESPACE, f"lines_read.{self._source}")
        self._blank = Metrics.counter(METRICS_NAMESPACE, f"blank_lines.{self._source}")
        self._files = Metrics.counter(METRICS_NAMESPACE, f"files_read.{self._source}")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead.read")

    def process(self, path: str):
        yield from self.read(path)

    def read(self, path: str, start: int = 0, end: int | None = None, first_line: int = 1):
        """Chunks of the whole file (``end`` None: any compression), or of the uncompressed byte range
        ``[start, end)`` whose first line is ``first_line``."""
        source, limit, chunk_lines = self._source, self._max_line_bytes, self._chunk_lines
        if start == 0:
            self._files.inc()
        chunk: list[bytes] = []
        skipped = 0            # placeholders in `chunk`
        first = number = first_line
        number -= 1
        try:
            with (open_input(path) if end is None else _open_range(path, start)) as raw:
                for number, line, overflow in iter_lines(raw, limit, first_line,
                                                         None if end is None else end - start):
                    if line is None:
                        self._lines.inc()
                        self._dead.inc()
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(
                            "read", f"line longer than {limit} bytes (max_line_bytes); first 4 KiB kept",
                            overflow, source=source, origin=path, line=number))
                    elif not line.strip():
                        self._blank.inc()
                    else:
                        if not chunk:
                            first = number
                        chunk.append(line)
                        if len(chunk) >= chunk_lines:
                            self._lines.inc(len(chunk) - skipped)
                            yield (source, path, first, chunk)
                            chunk, skipped = [], 0
                        continue
                    if chunk:
                        chunk.append(b"")
                        skipped += 1
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as err:
            # A truncated rotation or a corrupt archive: keep what was read, dead-letter the rest.
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(
                "read", f"input unreadable after line {number}: {type(err).__name__}: {err}",
                b"", source=source, origin=path, line=number + 1))
        if chunk:
            self._lines.inc(len(chunk) - skipped)
            yield (source, path, first, chunk)
