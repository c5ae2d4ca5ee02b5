"""Tail files through rotations: what `kubehunt follow` reads, and where it stopped.

A watched file is known by its identity (device, inode), not its name, so a rename (the API
server's rotation: `audit.log` -> `audit-2026-12-01T10-00-00.000.log`, a new `audit.log` started)
keeps its offset and the lines still appended to the old inode are read once. A compressed copy made
later (`gzip audit-....log`) is a new inode; it is recognised by the digest of its first line (the
same as the original's) and read on from the original's offset, so nothing is read twice.

Only complete lines are consumed: a partial last line stays in the file until its newline arrives.
Compressed files are read to their end (a truncated archive still being written is re-read from the
same decompressed offset at the next poll).

``Tailer.poll`` returns the new lines and a *new* state; nothing is remembered until the caller
``commit``s it after the lines were written (write output first, then the offsets), so a crash in
between replays, and deterministic document ids make the replay idempotent.
"""
from __future__ import annotations

import bz2
import copy
import glob
import gzip
import hashlib
import logging
import os
import time
import zlib
from dataclasses import dataclass, field

from transforms.records import dead_letter

log = logging.getLogger("kubehunt.follow")

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
# Entries of files that disappeared are kept this long, so a compressed copy that shows up later is
# still recognised; a bounded count keeps the state small whatever the uptime.
VANISHED_KEEP_S = 24 * 3600.0
VANISHED_KEEP_MAX = 10_000


@dataclass
class FileEntry:
    """What is known of one file identity (plain data: stored as JSON in the state file)."""
    source: str
    name: str                 # the path it had when first seen: the `origin` of its dead letters
    offset: int = 0           # bytes consumed (decompressed bytes for a compressed file)
    lines: int = 0            # line number of the last consumed line
    head: str | None = None   # digest of the first complete line
    compressed: bool = False
    skipping: bool = False    # inside an oversized line: discard up to the next newline
    superseded: bool = False  # a compressed copy took over: never read this identity again
    csize: int = -1           # compressed: the file's size when it was last read to its end
    seen: float = 0.0         # last time the file was seen (wall clock)


@dataclass
class TailState:
    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"files": {k: vars(v) for k, v in self.files.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "TailState":
        return cls({k: FileEntry(**v) for k, v in (data.get("files") or {}).items()})


@dataclass
class Chunk:
    source: str
    origin: str
    first: int                  # line number of lines[0]
    lines: list[bytes]


def _digest(line: bytes) -> str:
    return hashlib.blake2b(line.rstrip(b"\r\n"), digest_size=16).hexdigest()


def _compression(path: str) -> str | None:
    if path.endswith(".gz"):
        return "gzip"
    if path.endswith(".bz2"):
        return "bzip2"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
    except OSError:
        return None
    if magic[:2] == _GZIP_MAGIC:
        return "gzip"
    if magic == _BZIP2_MAGIC:
        return "bzip2"
    return None


def _open(path: str, compression: str | None):
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bzip2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def list_files(patterns: list[str]) -> list[str]:
    """Regular files matched now by files, globs (`**` recursive) and directories (all files under)."""
    out: set[str] = set()
    for pattern in patterns:
        if os.path.isdir(pattern):
            for root, _dirs, names in os.walk(pattern):
                out.update(os.path.join(root, n) for n in names)
        else:
            out.update(glob.glob(pattern, recursive=True))
    return sorted(p for p in out if os.path.isfile(p) and not os.path.basename(p).startswith("."))


class Tailer:
    """Find new lines in watched files; see the module docstring."""

    def __init__(self, sources: dict[str, list[str]], chunk_lines: int, max_line_bytes: int,
                 max_bytes_per_poll: int = 8 * 1024 * 1024):
        self._sources = sources
        self._chunk_lines = chunk_lines
        self._max_line_bytes = max_line_bytes
        # Per file and poll, so that one interval's memory is bounded whatever the backlog.
        self._budget = max(max_bytes_per_poll, max_line_bytes + 1)

    def poll(self, state: TailState, now: float | None = None):
        """-> (new state, chunks, dead letters, backlog): backlog is True when a file has more to read.

        ``self.grown`` is then the set of sources that had new bytes in this poll."""
        now = time.time() if now is None else now
        new = copy.deepcopy(state)
        chunks: list[Chunk] = []
        dead: list[dict] = []
        backlog = False
        present: set[str] = set()
        self.grown: set[str] = set()
        for source, patterns in self._sources.items():
            for path in list_files(patterns):
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone between listing and stat: the next poll sees where it went
                key = f"{st.st_dev}:{st.st_ino}"
                if key in present:
                    continue  # the same file under two patterns or names
                present.add(key)
                before = len(chunks) + len(dead)
                more = self._read(new, key, source, path, st.st_size, now, chunks, dead)
                if len(chunks) + len(dead) > before or more:
                    self.grown.add(source)
                backlog = backlog or more
        self._forget_vanished(new, present, now)
        return new, chunks, dead, backlog

    def _forget_vanished(self, state: TailState, present: set[str], now: float) -> None:
        gone = [k for k in state.files if k not in present]
        for key in gone:
            if now - state.files[key].seen > VANISHED_KEEP_S:
                del state.files[key]
        gone = sorted((k for k in state.files if k not in present), key=lambda k: state.files[k].seen)
        for key in gone[:max(0, len(gone) - VANISHED_KEEP_MAX)]:
            del state.files[key]

    def _read(self, state, key, source, path, size, now, chunks, dead) -> bool:
        entry = state.files.get(key)
        compression = _compression(path)
        if entry is not None and entry.superseded:
            entry.seen = now
            return False
        if entry is not None and not entry.compressed and size < entry.offset:
            # Truncated in place (copytruncate) or the inode was reused: start over.
            log.warning("%s shrank below the offset already read (%d < %d): reading it from the start",
                        path, size, entry.offset)
            entry = None
        if entry is not None and entry.head is not None and not entry.compressed:
            with open(path, "rb") as fh:
                first = fh.readline(self._max_line_bytes + 1)
            if first.endswith(b"\n") and _digest(first) != entry.head:
                entry = None  # a different file on a reused inode
        if entry is None:
            entry = FileEntry(source=source, name=path, compressed=compression is not None)
            if compression is not None:
                head = self._first_line_digest(path, compression)
                if head is None:
                    return False  # not even one line yet (still being written): look again later
                entry.head = head
                original = self._copy_of(state, head, key)
                if original is not None:
                    # The compressed copy of a file already (partly) read: go on from where it stopped.
                    entry.offset, entry.lines, entry.skipping = original.offset, original.lines, original.skipping
                    entry.name = original.name
                    original.superseded = True
                    log.info("%s is a compressed copy of %s: reading on from byte %d", path, original.name,
                             original.offset)
            state.files[key] = entry
        entry.seen = now
        if size == (entry.csize if entry.compressed else entry.offset):
            return False  # nothing new
        try:
            with _open(path, compression if entry.compressed else None) as fh:
                if entry.compressed:
                    _skip(fh, entry.offset)
                else:
                    fh.seek(entry.offset)
                data = fh.read(self._budget)
                more = len(data) == self._budget
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as err:
            # A compressed copy still being written, or unreadable right now: keep the offset, retry.
            log.info("%s: not readable yet (%s); will retry", path, type(err).__name__)
            return False
        eof_is_line_end = entry.compressed and not more
        self._consume(entry, data, eof_is_line_end, chunks, dead)
        if eof_is_line_end:
            entry.csize = size
        return more

    def _consume(self, entry: FileEntry, data: bytes, eof_is_line_end: bool, chunks, dead) -> None:
        pos = 0
        if entry.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                entry.offset += len(data)
                return
            pos = nl + 1
            entry.skipping = False
        end = data.rfind(b"\n") + 1
        if eof_is_line_end and end < len(data):
            end = len(data)
        lines: list[bytes] = []
        first = entry.lines + 1
        number = entry.lines
        for line in data[pos:end].splitlines(keepends=True) if end > pos else ():
            number += 1
            if entry.head is None and number == 1:
                entry.head = _digest(line)
            if len(line) > self._max_line_bytes:
                dead.append(dead_letter("read", f"line longer than {self._max_line_bytes} bytes (max_line_bytes); "
                                        "first 4 KiB kept", line[:4096], source=entry.source, origin=entry.name,
                                        line=number))
                continue
            if not line.strip():
                continue
            if not lines:
                first = number
            lines.append(line)
            if len(lines) >= self._chunk_lines:
                chunks.append(Chunk(entry.source, entry.name, first, lines))
                lines = []
        if lines:
            chunks.append(Chunk(entry.source, entry.name, first, lines))
        entry.lines = number
        consumed = max(end, pos)
        rest = len(data) - consumed
        if rest > self._max_line_bytes:
            # No newline within the limit: dead-letter the line's start and skip to its end.
            entry.lines += 1
            dead.append(dead_letter("read", f"line longer than {self._max_line_bytes} bytes (max_line_bytes); "
                                    "first 4 KiB kept", data[consumed:consumed + 4096], source=entry.source,
                                    origin=entry.name, line=entry.lines))
            consumed = len(data)
            entry.skipping = True
        entry.offset += consumed

    def _first_line_digest(self, path: str, compression: str) -> str | None:
        try:
            with _open(path, compression) as fh:
                line = fh.readline(self._max_line_bytes + 1)
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile):
            return None
        return _digest(line) if line.endswith(b"\n") else None

    @staticmethod
    def _copy_of(state: TailState, head: str, key: str) -> FileEntry | None:
        for other_key, other in state.files.items():
            if other_key != key and other.head == head and not other.superseded:
                return other
        return None


def _skip(fh, n: int) -> None:
    while n > 0:
        block = fh.read(min(n, 1 << 20))
        if not block:
            raise EOFError("compressed file shorter than the offset already read")
        n -= len(block)
