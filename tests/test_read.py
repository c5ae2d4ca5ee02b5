"""Reading inputs: files, globs, directories, compressed and broken files, oversized lines."""
from __future__ import annotations

import gzip

import pytest

from tests.helpers import read_ndjson, run_to_dir
from transforms.read import InputError, expand_patterns

AUDIT_LINE = (b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a-%d","stage":"ResponseComplete",'
              b'"verb":"get","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"ns"},'
              b'"requestReceivedTimestamp":"2026-01-01T00:00:%02d.000000Z"}\n')


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(AUDIT_LINE % (i, i % 60) for i in range(start, start + n))


def test_gzip_directory_glob_and_overlap_read_each_file_once(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(5))
    with gzip.open(logs / "audit.log.1.gz", "wb") as fh:
        fh.write(lines(7, start=100))
    # gzip content under a name that does not say so (a rotation tool's choice): sniffed by magic bytes.
    with gzip.open(logs / "audit-2026-01-01.log", "wb") as fh:
        fh.write(lines(3, start=200))
    code, summary, out = run_to_dir(tmp_path, "--audit", logs, str(logs / "*.gz"))
    assert code == 0
    docs = read_ndjson(out, "events")
    assert sorted(d["kubernetes"]["audit"]["auditID"] for d in docs) == sorted(
        [f"a-{i}" for i in range(5)] + [f"a-{i}" for i in range(100, 107)] + [f"a-{i}" for i in range(200, 203)])
    assert summary["files_read"]["audit"] == 3


def test_blank_lines_are_skipped_and_counted_not_dead_lettered(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(b"\n" + lines(2) + b"   \n\n")
    code, summary, out = run_to_dir(tmp_path, "--audit", f)
    assert code == 0
    assert summary["events"]["audit"] == 2
    assert summary["blank_lines_skipped"]["audit"] == 3
    assert read_ndjson(out, "dead-letters") == []


def test_oversized_line_is_dead_lettered_and_the_rest_is_read(tmp_path):
    f = tmp_path / "a.log"
    huge = b'{"kind":"Event","auditID":"big","x":"' + b"y" * 5000 + b'"}\n'
    f.write_bytes(lines(2) + huge + lines(2, start=10))
    code, summary, out = run_to_dir(tmp_path, "--audit", f, "--max-line-bytes", "2000")
    assert code == 0
    dead = read_ndjson(out, "dead-letters")
    assert len(dead) == 1
    letter = dead[0]["kubehunt"]["dead_letter"]
    assert letter["stage"] == "read" and letter["line"] == 3 and "longer than 2000 bytes" in letter["reason"]
    assert summary["events"]["audit"] == 4
    assert summary["balanced"]


def test_truncated_gzip_keeps_what_was_read_and_dead_letters_the_rest(tmp_path):
    whole = gzip.compress(lines(3000))
    f = tmp_path / "audit.log.gz"
    f.write_bytes(whole[: len(whole) // 2])
    code, summary, out = run_to_dir(tmp_path, "--audit", f)
    assert code == 0
    dead = read_ndjson(out, "dead-letters")
    assert len(dead) == 1 and dead[0]["kubehunt"]["dead_letter"]["stage"] == "read"
    assert "unreadable after line" in dead[0]["kubehunt"]["dead_letter"]["reason"]
    read = summary["events"]["audit"] + summary["dead_letters"]["parse"]
    assert 0 < read < 3000  # some lines were decoded before the cut; a partial last line may dead-letter
    assert summary["balanced"]


def test_a_pattern_that_matches_nothing_fails_fast(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        expand_patterns([str(tmp_path / "nope-*.log")])
