"""Split large uncompressed inputs into byte ranges so that several workers read one file.

``ReadSplitChunks`` reads the files of one source: matched files are planned into ``Split``s (a whole
file, or a line-aligned byte range of an uncompressed file larger than ``split_bytes``), the small
split descriptors are shuffled (the only shuffle: no data moves), and each split is read into chunks
of lines where it lands, by ``transforms.read.ReadChunksFn`` (a file no larger than ``split_bytes``
is its no-split case: one ``Split`` of the whole file). Compressed files (by name or by magic bytes)
cannot be entered in the middle and stay whole.

The planner reads the file once to put every boundary on a line start and to count the lines before
it, so line numbers (in dead letters) are exact: a range is ``[start, end)`` in bytes, starting at
line ``first_line``, and holds exactly the lines that start in it. Counting newlines runs at memory
speed (bytes.count), a small price next to parsing the same bytes.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.read import (DEFAULT_CHUNK_LINES, DEFAULT_MAX_LINE_BYTES, ReadChunksFn, file_identity,
                             sniff_compression)
from transforms.records import DEAD_LETTER

# A split is the unit a runner hands a worker, and the local multi-process runner hands each worker
# its share once, up front: 8 MiB (~7,000 events, under a second of work) keeps two workers within a
# split of each other. 32 MiB left one worker ~2 s behind the other on a 450 MB file (issue 9).
DEFAULT_SPLIT_BYTES = 8 * 1024 * 1024
_BLOCK = 8 * 1024 * 1024


class Split(NamedTuple):
    """A unit of reading: ``path`` from byte ``start`` to ``end`` (None: the whole file, any compression)."""
    path: str
    start: int = 0
    end: int | None = None
    first_line: int = 1


def _splittable(path: str) -> bool:
    # Compressed content cannot be entered in the middle, whatever the file is called; plain text can,
    # even when it is called `.gz` (the whole-file reader also tells compression by content).
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as probe:
        head = probe.read(16)
    return sniff_compression(head) is None


def plan_splits(path: str, size: int, split_bytes: int) -> list[Split]:
    """Line-aligned ranges of about ``split_bytes`` covering the file, with the line number of each start."""
    if size <= split_bytes or not _splittable(path):
        return [Split(path)]
    splits: list[Split] = []
    start, first_line = 0, 1
    target = split_bytes
    lines = 0          # newlines before `offset`
    offset = 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while True:
            block = handle.read(_BLOCK)
            if not block:
                break
            block_end = offset + len(block)
            cursor = 0
            while target < block_end:
                # The first line start at or after `target`: just past the next newline from target - 1.
                newline = block.find(b"\n", max(target - 1 - offset, cursor))
                if newline < 0:
                    break
                lines += block.count(b"\n", cursor, newline + 1)
                cursor = newline + 1
                boundary = offset + cursor
                if boundary < size:
                    splits.append(Split(path, start, boundary, first_line))
                    start, first_line = boundary, lines + 1
                target = boundary + split_bytes
            lines += block.count(b"\n", cursor)
            offset = block_end
    splits.append(Split(path, start, size, first_line))
    return splits


def _keyed_by_identity(metadata):
    """(file identity, (path, size)) for a matched file; directories are dropped."""
    if metadata.path.endswith("/") or os.path.isdir(metadata.path):
        return
    identity, path = file_identity(metadata.path)
    yield identity, (path, metadata.size_in_bytes)


class PlanSplitsFn(beam.DoFn):
    def __init__(self, split_bytes: int):
        self._split_bytes = split_bytes

    def process(self, file):
        path, size = file
        yield from plan_splits(path, size, self._split_bytes)


class ReadSplitFn(ReadChunksFn):
    """Read one ``Split`` into chunks ``(source, origin, first_line, [line, ...])``: a whole file (any
    compression) or a byte range, by the one reader (``ReadChunksFn.read``), same counters."""

    def process(self, split: Split):
        yield from self.read(split.path, split.start, split.end, split.first_line)


class ReadSplitChunks(beam.PTransform):
    """Files/globs/directories of one source -> chunks of lines, large uncompressed files in ranges.

    Main output: chunks; tagged ``DEAD_LETTER``: oversized lines and unreadable files. The read,
    the per-event stage and the sinks that follow fuse into one stage per split, so a document is
    written where it is made. ``reshuffle=True`` also spreads the chunks (a shuffle of the data:
    only for runners that spill shuffles to disk).
    """

    def __init__(self, source: str, patterns: list[str], chunk_lines: int = DEFAULT_CHUNK_LINES,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, split_bytes: int = DEFAULT_SPLIT_BYTES,
                 reshuffle: bool = False):
        super().__init__()
        self._source = source
        self._patterns = list(patterns)
        self._chunk_lines, self._max_line_bytes = chunk_lines, max_line_bytes
        self._split_bytes = split_bytes
        self._reshuffle = reshuffle

    def expand(self, pbegin):
        s = self._source
        read = (pbegin
                | f"{s}:Patterns" >> beam.Create(self._patterns)
                | f"{s}:Match" >> fileio.MatchAll()
                # Overlapping patterns and other spellings of a path (./x, a/../x, a symlink, a hard
                # link) must not read a file twice: one entry per file identity, the same path
                # whatever the order (min).
                | f"{s}:FileIdentity" >> beam.FlatMap(_keyed_by_identity)
                | f"{s}:DistinctFiles" >> beam.CombinePerKey(min)
                | f"{s}:Files" >> beam.Values()
                | f"{s}:PlanSplits" >> beam.ParDo(PlanSplitsFn(self._split_bytes))
                # The only shuffle: split descriptors (a few bytes each) spread over the workers.
                | f"{s}:SpreadSplits" >> beam.Reshuffle()
                | f"{s}:ReadSplits" >> beam.ParDo(
                    ReadSplitFn(s, self._chunk_lines, self._max_line_bytes)).with_outputs(DEAD_LETTER, main="chunks"))
        chunks = read.chunks
        if self._reshuffle:
            chunks = chunks | f"{s}:SpreadChunks" >> beam.Reshuffle()
        return {"chunks": chunks, DEAD_LETTER: read[DEAD_LETTER]}
