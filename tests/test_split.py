"""Byte-range splits (transforms/split.py): every line read exactly once, with its exact line number."""
from __future__ import annotations

import gzip

import pytest

from transforms.split import ReadSplitFn, Split, plan_splits


def read_all(splits, **kwargs):
    fn = ReadSplitFn("audit", **kwargs)
    fn.setup()
    chunks, dead = [], []
    for split in splits:
        for out in fn.process(split):
            if hasattr(out, "tag"):
                dead.append(out.value)
            else:
                chunks.append(out)
    return chunks, dead


def numbered(chunks):
    """(line number, line) as the per-event stage sees them: first + offset, placeholders skipped."""
    return [(first + i, line) for _, _, first, lines in chunks for i, line in enumerate(lines) if line]


@pytest.mark.parametrize("split_bytes", [1, 7, 50, 333, 10_000])
def test_ranges_cover_every_line_once_with_its_line_number(tmp_path, split_bytes):
    lines = [f'{{"n":{i},"pad":"{"x" * (i % 37)}"}}\n'.encode() for i in range(400)]
    lines[10] = b"\n"          # blank lines are counted, not emitted
    lines[11] = b"   \n"
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(lines) + b'{"last":"no newline"}')
    splits = plan_splits(str(path), path.stat().st_size, split_bytes)
    if split_bytes < 10_000:
        assert len(splits) > 1
    # Boundaries are line starts and the ranges tile the file.
    assert splits[0].start == 0 and splits[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(splits, splits[1:]))
    data = path.read_bytes()
    assert all(data[s.start - 1:s.start] == b"\n" for s in splits[1:])
    chunks, dead = read_all(splits, chunk_lines=17)
    expected = [(i + 1, line) for i, line in enumerate(lines + [b'{"last":"no newline"}']) if line.strip()]
    assert numbered(chunks) == expected
    assert dead == []


def test_an_oversized_line_in_a_range_is_dead_lettered_with_its_line_number(tmp_path):
    path = tmp_path / "audit.log"
    body = [b'{"a":1}\n'] * 30 + [b'{"big":"' + b"y" * 5000 + b'"}\n'] + [b'{"b":2}\n'] * 30
    path.write_bytes(b"".join(body))
    splits = plan_splits(str(path), path.stat().st_size, 100)
    chunks, dead = read_all(splits, chunk_lines=10, max_line_bytes=1000)
    assert [n for n, _ in numbered(chunks)] == [n for n in range(1, 62) if n != 31]
    (letter,) = dead
    assert letter["kubehunt"]["dead_letter"]["line"] == 31
    assert "max_line_bytes" in letter["kubehunt"]["dead_letter"]["reason"]


def test_lines_after_an_oversized_line_inside_a_chunk_keep_their_numbers(tmp_path):
    # One range of 7 lines read as one chunk: the 4th line is over the limit. (The range reader used to
    # number the lines after it one too low; a whole file was right: both are the one reader now.)
    path = tmp_path / "audit.log"
    body = [b'{"a":1}\n'] * 3 + [b'{"big":"' + b"y" * 5000 + b'"}\n'] + [b'{"b":2}\n'] * 2 + [b"\n", b'{"c":3}\n']
    path.write_bytes(b"".join(body))
    size = path.stat().st_size
    for split in (Split(str(path), 0, size, 1), Split(str(path))):
        chunks, dead = read_all([split], chunk_lines=100, max_line_bytes=1000)
        assert numbered(chunks) == [(1, body[0]), (2, body[1]), (3, body[2]), (5, body[4]), (6, body[5]),
                                    (8, body[7])]
        assert [d["kubehunt"]["dead_letter"]["line"] for d in dead] == [4]


def test_a_range_reads_the_lines_that_start_in_it_from_its_first_line_number(tmp_path):
    path = tmp_path / "audit.log"
    lines = [f'{{"n":{i}}}\n'.encode() for i in range(1, 11)]
    path.write_bytes(b"".join(lines))
    start = sum(map(len, lines[:3]))
    end = start + sum(map(len, lines[3:7]))
    chunks, dead = read_all([Split(str(path), start, end, 4)], chunk_lines=3)
    assert numbered(chunks) == [(n, lines[n - 1]) for n in (4, 5, 6, 7)]
    assert [(c[2], len(c[3])) for c in chunks] == [(4, 3), (7, 1)] and dead == []


def test_compressed_files_stay_whole_whatever_their_name(tmp_path):
    path = tmp_path / "audit.log"   # gzip content without a .gz name
    path.write_bytes(gzip.compress(b'{"a":1}\n' * 10_000))
    assert plan_splits(str(path), path.stat().st_size, 10) == [Split(str(path))]
    named = tmp_path / "audit.log.gz"
    named.write_bytes(path.read_bytes())
    assert plan_splits(str(named), named.stat().st_size, 10) == [Split(str(named))]
    chunks, _ = read_all([Split(str(path))], chunk_lines=1000)
    assert sum(len(c[3]) for c in chunks) == 10_000
