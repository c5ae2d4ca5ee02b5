"""`--max-line-bytes`, `--chunk-lines` and `--split-bytes` at their edges, in both readers (whole files,
transforms/read.py, and byte ranges, transforms/split.py): a line of exactly the limit is kept and one
byte more is dead-lettered with its line number; chunks hold exactly `chunk_lines` lines and restart
after a skipped line; a file of exactly `split_bytes` stays whole; and compression is told by content
(a bzip2 file read through, text starting with "BZh" read as text)."""
from __future__ import annotations

import bz2
import gzip

import pytest

from transforms.read import ReadChunksFn, iter_lines, open_input, sniff_compression
from transforms.split import ReadSplitFn, Split, plan_splits

LIMIT = 64


def whole(path, **kwargs):
    fn = ReadChunksFn("audit", **kwargs)
    fn.setup()
    return _split_outputs(fn.process(str(path)))


def ranges(path, split_bytes, **kwargs):
    fn = ReadSplitFn("audit", **kwargs)
    fn.setup()
    out = []
    for split in plan_splits(str(path), path.stat().st_size, split_bytes):
        out.extend(fn.process(split))
    return _split_outputs(out)


def _split_outputs(outputs):
    chunks, dead = [], []
    for out in outputs:
        if hasattr(out, "tag"):
            dead.append(out.value["kubehunt"]["dead_letter"])
        else:
            chunks.append((out[2], list(out[3])))
    return chunks, dead


def numbered(chunks):
    """(line number, line) as the per-event stage sees them: first + offset, placeholders skipped."""
    return [(first + i, line) for first, lines in chunks for i, line in enumerate(lines) if line]


def line_of(n: int, newline: bool = True) -> bytes:
    """A line of exactly n bytes, its newline included when there is one."""
    return b"x" * (n - 1 if newline else n) + (b"\n" if newline else b"")


@pytest.fixture
def edge_file(tmp_path):
    """Line 2 is exactly LIMIT bytes plus its newline (kept); line 3 is one byte more (dead); line 5,
    the last, has no newline and exactly LIMIT bytes (kept)."""
    path = tmp_path / "audit.log"
    path.write_bytes(b"a\n" + line_of(LIMIT + 1) + line_of(LIMIT + 2) + b"b\n" + line_of(LIMIT, newline=False))
    return path


def test_iter_lines_keeps_a_line_of_exactly_the_limit_and_numbers_from_one(edge_file):
    with open(edge_file, "rb") as fh:
        got = [(n, line is not None, len(line or prefix)) for n, line, prefix in iter_lines(fh, LIMIT)]
    assert got == [(1, True, 2), (2, True, LIMIT + 1), (3, False, LIMIT + 1), (4, True, 2), (5, True, LIMIT)]


@pytest.mark.parametrize("read", [whole, lambda p, **kw: ranges(p, 40, **kw)], ids=["whole", "ranges"])
def test_one_byte_over_the_limit_is_dead_lettered_with_its_line_number(edge_file, read):
    chunks, dead = read(edge_file, max_line_bytes=LIMIT, chunk_lines=100)
    assert [(n, len(line)) for n, line in numbered(chunks)] == [(1, 2), (2, LIMIT + 1), (4, 2), (5, LIMIT)]
    assert [(d["line"], d["stage"]) for d in dead] == [(3, "read")]
    assert dead[0]["reason"] == f"line longer than {LIMIT} bytes (max_line_bytes); first 4 KiB kept"


def test_whole_file_chunks_hold_chunk_lines_lines_and_number_them_across_a_blank(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"1\n2\n3\n4\n5\n")
    chunks, dead = whole(path, chunk_lines=2)
    assert chunks == [(1, [b"1\n", b"2\n"]), (3, [b"3\n", b"4\n"]), (5, [b"5\n"])] and dead == []
    path.write_bytes(b"1\n2\n3\n\n5\n6\n7\n")
    chunks, dead = whole(path, chunk_lines=2)
    assert numbered(chunks) == [(n, b"%d\n" % n) for n in (1, 2, 3, 5, 6, 7)] and dead == []
    assert all(lines[0] for _, lines in chunks)   # a chunk starts on a line, not a placeholder


def test_a_truncated_gzip_names_the_line_after_the_last_one_read(tmp_path):
    path = tmp_path / "audit.log.gz"
    data = gzip.compress(b"".join(b'{"n":%d}\n' % i for i in range(20_000)))
    path.write_bytes(data[: len(data) // 2])
    chunks, dead = whole(path, chunk_lines=1000)
    read = sum(len(c) for _, c in chunks)
    assert 0 < read < 20_000
    (letter,) = dead
    assert letter["line"] == read + 1
    assert letter["reason"].startswith(f"input unreadable after line {read}: ")


def test_a_file_of_exactly_split_bytes_stays_whole(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"0123456789\n" * 10)   # 110 bytes
    assert plan_splits(str(path), 110, 110) == [Split(str(path))]
    # One byte less: a range plan, but the only line start past the target is the end of the file,
    # so one range and no empty one after it.
    assert plan_splits(str(path), 110, 109) == [Split(str(path), 0, 110, 1)]
    assert plan_splits(str(path), 110, 100) == [Split(str(path), 0, 110, 1)]


def test_ranges_start_on_line_starts_with_their_line_numbers_and_none_is_empty(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"0123456789\n" * 10)   # 10 lines of 11 bytes
    assert plan_splits(str(path), 110, 22) == [Split(str(path), s, s + 22, s // 11 + 1) for s in (0, 22, 44, 66, 88)]
    # A target that falls inside a line moves to the next line start.
    assert plan_splits(str(path), 110, 30) == [Split(str(path), 0, 33, 1), Split(str(path), 33, 66, 4),
                                               Split(str(path), 66, 99, 7), Split(str(path), 99, 110, 10)]
    # The last boundary would be the end of the file: no empty range after it.
    assert plan_splits(str(path), 110, 55) == [Split(str(path), 0, 55, 1), Split(str(path), 55, 110, 6)]


def test_bzip2_is_told_by_content_and_read_through(tmp_path):
    body = b"".join(b'{"n":%d}\n' % i for i in range(500))
    packed = bz2.compress(body)
    assert sniff_compression(packed[:10]) == "bzip2"
    path = tmp_path / "audit.log"   # no .bz2 name
    path.write_bytes(packed)
    with open_input(str(path)) as fh:
        assert fh.readline() == b'{"n":0}\n'
    chunks, dead = whole(path, chunk_lines=1000)
    assert chunks == [(1, body.splitlines(keepends=True))] and dead == []


@pytest.mark.parametrize("head", [b"BZh", b"BZh9 is text", b"BZh91AY&SX", b"BZhx1AY&SY..", b"\x1f", b""])
def test_text_that_starts_like_bzip2_is_text(head):
    assert sniff_compression(head) is None


@pytest.mark.parametrize(("head", "kind"), [(b"\x1f\x8b\x08", "gzip"), (b"\x28\xb5\x2f\xfd\x00", "zstd"),
                                            (b"BZh91AY&SY", "bzip2"), (b"BZh1\x17\x72\x45\x38\x50\x90", "bzip2")])
def test_compression_magic(head, kind):
    assert sniff_compression(head) == kind


def test_zstd_is_read_through_frame_after_frame_and_a_cut_one_is_a_dead_letter(tmp_path):
    import zstandard

    body = b"".join(b'{"n":%d}\n' % i for i in range(3000))
    packed = zstandard.ZstdCompressor().compress(body[:9000]) + zstandard.ZstdCompressor().compress(body[9000:])
    path = tmp_path / "audit.log"
    path.write_bytes(packed)
    chunks, dead = whole(path, chunk_lines=10_000)
    assert chunks == [(1, body.splitlines(keepends=True))] and dead == []
    path.write_bytes(packed[:-20])   # the second frame cut short
    chunks, dead = whole(path, chunk_lines=10_000)
    read = sum(len(c) for _, c in chunks)
    assert 0 < read < 3000 and [d["line"] for d in dead] == [read + 1]
    assert "EOFError: zstd stream ended inside a frame (truncated)" in dead[0]["reason"]


def test_plain_text_named_gz_is_split_like_any_text(tmp_path):
    path = tmp_path / "audit.log.gz"
    path.write_bytes(b"0123456789\n" * 10)
    assert plan_splits(str(path), 110, 55) == [Split(str(path), 0, 55, 1), Split(str(path), 55, 110, 6)]


def test_line_numbers_count_blank_lines_at_a_boundary(tmp_path):
    path = tmp_path / "audit.log"
    # 5 lines of 11 bytes, then 5 blank lines, then 5 lines of 11 bytes (115 bytes): the boundary at
    # 55 is followed by blank lines, which still count.
    path.write_bytes(b"0123456789\n" * 5 + b"\n" * 5 + b"abcdefghij\n" * 5)
    splits = plan_splits(str(path), path.stat().st_size, 55)
    assert [(s.start, s.end, s.first_line) for s in splits] == [(0, 55, 1), (55, 115, 6)]
    chunks, dead = ranges(path, 55, chunk_lines=100)
    assert [n for n, _ in numbered(chunks)] == [1, 2, 3, 4, 5, 11, 12, 13, 14, 15] and dead == []


def test_ranges_past_the_first_read_block_keep_exact_line_numbers(tmp_path):
    from transforms import split

    path = tmp_path / "audit.log"
    line = b'{"pad":"' + b"x" * 1013 + b'"}\n'    # 1 KiB lines
    path.write_bytes(line * (12 * 1024))        # 12 MiB: past the planner's 8 MiB read block
    assert path.stat().st_size > split._BLOCK
    splits = plan_splits(str(path), path.stat().st_size, 3 * 2**20)
    assert [(s.start, s.first_line) for s in splits] == [(i * 3 * 2**20, i * 3 * 1024 + 1) for i in range(4)]


def test_a_range_whose_file_vanished_is_a_dead_letter_naming_its_first_line(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"0123456789\n" * 10)
    splits = plan_splits(str(path), 110, 55)
    path.unlink()
    fn = ReadSplitFn("audit")
    fn.setup()
    chunks, dead = _split_outputs(fn.process(splits[1]))
    assert chunks == [] and [(d["line"], d["stage"]) for d in dead] == [(6, "read")]
    assert dead[0]["reason"].startswith("input unreadable after line 5: FileNotFoundError: ")
