"""Reading by content and identity: one read per file however it is named, compression sniffed from
the bytes (not the name), and truncated archives that keep every line before the cut."""
from __future__ import annotations

import bz2
import gzip
import os
import zlib

import pytest
import zstandard

from tests.helpers import read_ndjson, run_to_dir
from transforms.read import file_identity, sniff_compression

AUDIT_LINE = (b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a-%d","stage":"ResponseComplete",'
              b'"verb":"get","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"ns"},'
              b'"requestReceivedTimestamp":"2026-01-01T00:00:%02d.000000Z"}\n')


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(AUDIT_LINE % (i, i % 60) for i in range(start, start + n))


def audit_ids(out) -> list[str]:
    return sorted(d["kubernetes"]["audit"]["auditID"] for d in read_ndjson(out, "events"))


def test_the_same_file_under_several_spellings_and_a_symlink_is_read_once(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "x.log").write_bytes(lines(20))
    (tmp_path / "link.log").symlink_to(corpus / "x.log")
    monkeypatch.chdir(tmp_path)
    code, summary, out = run_to_dir(
        tmp_path, "--audit", "corpus/x.log", "./corpus/x.log", f"{tmp_path}/corpus/../corpus/x.log",
        "link.log", "corpus", "corpus/*.log")
    assert code == 0
    assert audit_ids(out) == sorted(f"a-{i}" for i in range(20))
    assert summary["files_read"]["audit"] == 1 and summary["lines_read"]["audit"] == 20


def test_a_hard_link_is_the_same_file(tmp_path):
    (tmp_path / "a.log").write_bytes(lines(4))
    os.link(tmp_path / "a.log", tmp_path / "b.log")
    code, summary, out = run_to_dir(tmp_path, "--audit", tmp_path / "a.log", tmp_path / "b.log")
    assert code == 0 and summary["files_read"]["audit"] == 1 and len(read_ndjson(out, "events")) == 4


def test_two_files_with_the_same_content_are_two_files(tmp_path):
    (tmp_path / "a.log").write_bytes(lines(4))
    (tmp_path / "b.log").write_bytes(lines(4))
    code, summary, _ = run_to_dir(tmp_path, "--audit", tmp_path / "a.log", tmp_path / "b.log")
    # Same events (same ids: the sink dedupes them), but both files are read and counted.
    assert code == 0 and summary["files_read"]["audit"] == 2 and summary["lines_read"]["audit"] == 8


def test_every_spelling_of_a_local_file_has_one_identity_and_remote_paths_are_their_own(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x")
    (tmp_path / "s").symlink_to(tmp_path / "d" / "f")
    monkeypatch.chdir(tmp_path)
    ids = {file_identity(p) for p in ("d/f", "./d/f", f"{tmp_path}/d/../d/f", "s")}
    assert ids == {(("inode", os.stat("d/f").st_dev, os.stat("d/f").st_ino), os.path.realpath("d/f"))}
    assert file_identity("gs://bucket/a/../a/f") == (("path", "gs://bucket/a/../a/f"), "gs://bucket/a/../a/f")
    assert file_identity("gs://bucket/a") != file_identity("gs://bucket/b")


@pytest.mark.parametrize(("name", "encode"), [
    ("plain.gz", lambda b: b), ("plain.bz2", lambda b: b), ("plain.zst", lambda b: b),
    ("gzip.log", gzip.compress), ("bzip2.json", bz2.compress),
    ("zstd.txt", lambda b: zstandard.ZstdCompressor().compress(b)),
    ("two-zstd-frames.log", lambda b: zstandard.ZstdCompressor().compress(b[:900])
     + zstandard.ZstdCompressor().compress(b[900:])),
    ("two-gzip-members", lambda b: gzip.compress(b[:700]) + gzip.compress(b[700:])),
])
def test_compression_is_told_by_content_not_by_name(tmp_path, name, encode):
    f = tmp_path / name
    f.write_bytes(encode(lines(12)))
    code, summary, out = run_to_dir(tmp_path, "--audit", f)
    assert code == 0
    assert audit_ids(out) == sorted(f"a-{i}" for i in range(12))
    assert summary["lines_read"]["audit"] == 12 and read_ndjson(out, "dead-letters") == []


def test_text_that_starts_like_a_bzip2_header_is_text():
    assert sniff_compression(b"BZh hello\n") is None
    assert sniff_compression(bz2.compress(b"x")[:10]) == "bzip2"
    assert sniff_compression(b"") is None


def _decodable_prefix(kind: str, cut: bytes) -> bytes:
    """What an independent decoder recovers from a truncated archive (the oracle)."""
    if kind == "gz":
        return zlib.decompressobj(wbits=31).decompress(cut)
    if kind == "bz2":
        out, dec = b"", bz2.BZ2Decompressor()
        for i in range(0, len(cut), 4096):
            out += dec.decompress(cut[i:i + 4096])
        return out
    return zstandard.ZstdDecompressor().decompressobj().decompress(cut)


@pytest.mark.parametrize("kind", ["gz", "bz2", "zst"])
def test_a_truncated_archive_keeps_every_line_before_the_cut_and_dead_letters_the_rest(tmp_path, kind):
    data = lines(6000)
    whole = {"gz": gzip.compress, "bz2": lambda b: bz2.compress(b, 1),
             "zst": lambda b: zstandard.ZstdCompressor().compress(b)}[kind](data)
    cut = whole[: len(whole) * 2 // 3]
    kept = _decodable_prefix(kind, cut).count(b"\n")
    assert 0 < kept < 6000   # the oracle itself: the cut is mid-file (bzip2: past its first 100 kB block)
    f = tmp_path / f"audit.log.{kind}"
    f.write_bytes(cut)
    code, summary, out = run_to_dir(tmp_path, "--audit", f)
    assert code == 0
    assert audit_ids(out) == sorted(f"a-{i}" for i in range(kept))
    dead = read_ndjson(out, "dead-letters")
    assert len(dead) == 1
    letter = dead[0]["kubehunt"]["dead_letter"]
    assert letter["stage"] == "read" and letter["line"] == kept + 1
    assert letter["reason"].startswith(f"input unreadable after line {kept}: ")
    assert summary["dead_letters"]["parse"] == 0 and summary["balanced"]


def test_a_corrupt_archive_is_one_read_dead_letter_and_the_run_goes_on(tmp_path):
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"\xff" * 100)
    good = tmp_path / "good.log"
    good.write_bytes(lines(3))
    code, summary, out = run_to_dir(tmp_path, "--audit", bad, good)
    assert code == 0 and len(read_ndjson(out, "events")) == 3
    dead = read_ndjson(out, "dead-letters")
    assert [d["kubehunt"]["dead_letter"]["reason"].split(":")[0] for d in dead] == ["input unreadable after line 0"]
    assert summary["balanced"]


def test_dead_letters_after_blank_and_oversized_lines_name_their_own_line(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(lines(2) + b"\n" + lines(1, start=2) + b'{"too":"' + b"y" * 3000 + b'"}\n' + b"not json\n"
                  + b"\n\n" + b"[1]\n")
    code, summary, out = run_to_dir(tmp_path, "--audit", f, "--max-line-bytes", "2000")
    assert code == 0
    dead = {d["kubehunt"]["dead_letter"]["line"]: d["kubehunt"]["dead_letter"] for d in read_ndjson(out, "dead-letters")}
    assert sorted(dead) == [5, 6, 9]
    assert "longer than 2000" in dead[5]["reason"] and dead[6]["raw"].startswith("not json")
    assert dead[9]["raw"].startswith("[1]")
    assert audit_ids(out) == ["a-0", "a-1", "a-2"] and summary["balanced"]


# A non-local Beam filesystem for the test (a real FileSystem subclass, found by Beam through its
# scheme like gs:// or s3://), served from local disk: identity there is the path.
from apache_beam.io.filesystem import FileMetadata, MatchResult  # noqa: E402
from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402

_PREFIX = "kubehunttest://"


class _RemoteLikeFileSystem(LocalFileSystem):
    @classmethod
    def scheme(cls):
        return "kubehunttest"

    def match(self, patterns, limits=None):
        results = super().match([p[len(_PREFIX):] for p in patterns], limits)
        return [MatchResult(_PREFIX + r.pattern, [FileMetadata(_PREFIX + m.path, m.size_in_bytes, m.last_updated_in_seconds)
                                                  for m in r.metadata_list]) for r in results]

    def open(self, path, *args, **kwargs):
        return super().open(path[len(_PREFIX):], *args, **kwargs)


def test_files_on_a_non_local_beam_filesystem_are_read_once_by_path_with_compression_by_content(tmp_path):
    (tmp_path / "a.log").write_bytes(gzip.compress(lines(5)))
    (tmp_path / "b.gz").write_bytes(lines(3, start=10) + b"junk\n")
    a, b = f"{_PREFIX}{tmp_path}/a.log", f"{_PREFIX}{tmp_path}/b.gz"
    code, summary, out = run_to_dir(tmp_path, "--audit", a, a, b)
    assert code == 0
    assert summary["files_read"]["audit"] == 2
    assert audit_ids(out) == sorted([f"a-{i}" for i in range(5)] + [f"a-{i}" for i in range(10, 13)])
    dead = [d["kubehunt"]["dead_letter"] for d in read_ndjson(out, "dead-letters")]
    assert [(d["origin"], d["line"]) for d in dead] == [(b, 4)]   # the path as given: no local resolving
    assert file_identity(a) == (("path", a), a)


@pytest.mark.parametrize("split", [None, "300"], ids=["whole-file", "byte-ranges"])
def test_lines_read_counts_every_non_blank_line_when_blanks_and_long_lines_sit_inside_chunks(tmp_path, split):
    # Blank and oversized lines inside a chunk leave placeholders there; the books count lines read
    # without them (the same survivors of scripts/mutation.sh: `skipped` miscounted, added or set).
    long_line = b'{"kind":"Event","pad":"' + b"x" * 600 + b'"}\n'
    body = (lines(2) + b"\n" + lines(1, 2) + b"\n  \n" + lines(2, 3) + long_line + lines(1, 5) + b"\n"
            + lines(3, 6) + b"\n")
    (tmp_path / "a.log").write_bytes(body)
    extra = ["--split-bytes", split] if split else []
    code, summary, out = run_to_dir(tmp_path, "--audit", str(tmp_path / "a.log"), "--chunk-lines", "3",
                                    "--max-line-bytes", "500", *extra)
    assert code == 0
    assert audit_ids(out) == sorted(f"a-{i}" for i in range(9))
    assert summary["lines_read"]["audit"] == 10            # 9 events + the long line
    assert summary["blank_lines_skipped"]["audit"] == 5    # lines 3, 5, 6, 11, 15
    [dead] = read_ndjson(out, "dead-letters")
    assert dead["kubehunt"]["dead_letter"]["line"] == 9    # lines: 1-2, blank, 4, blank x2, 7-8, long
