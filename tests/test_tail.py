"""Tailing through the API server's rotation: rename, new file, later gzip, partial lines, restarts."""
from __future__ import annotations

import gzip
import os
import shutil

from transforms.tail import Tailer, TailState


def _lines(chunks) -> list[bytes]:
    return [line for chunk in chunks for line in chunk.lines]


def _poll(tailer, state):
    new, chunks, dead, _ = tailer.poll(state)
    return new, _lines(chunks), dead


def test_partial_line_is_read_once_complete(tmp_path):
    log = tmp_path / "audit.log"
    log.write_bytes(b'{"a":1}\n{"a":')
    tailer = Tailer({"audit": [str(tmp_path)]}, chunk_lines=10, max_line_bytes=1000)
    state, lines, _ = _poll(tailer, TailState())
    assert lines == [b'{"a":1}\n']
    state, lines, _ = _poll(tailer, state)
    assert lines == []
    with open(log, "ab") as fh:
        fh.write(b'2}\n')
    state, lines, _ = _poll(tailer, state)
    assert lines == [b'{"a":2}\n']


def test_rotation_rename_new_file_and_later_gzip_reads_every_line_once(tmp_path):
    log = tmp_path / "audit.log"
    tailer = Tailer({"audit": [str(tmp_path)]}, chunk_lines=3, max_line_bytes=1000)
    log.write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(5)))
    state, seen, _ = _poll(tailer, TailState())
    # The server writes two more lines, then rotates: rename, and a new audit.log.
    with open(log, "ab") as fh:
        fh.write(b'{"n":5}\n{"n":6}\n')
    rotated = tmp_path / "audit-2026-12-01T10-00-00.000.log"
    os.rename(log, rotated)
    log.write_bytes(b'{"n":100}\n')
    state, lines, _ = _poll(tailer, state)
    seen += lines
    # The old inode got one last line after the rename; then logrotate compresses it and deletes it.
    with open(rotated, "ab") as fh:
        fh.write(b'{"n":7}\n')
    with open(rotated, "rb") as src, gzip.open(str(rotated) + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(rotated)
    with open(log, "ab") as fh:
        fh.write(b'{"n":101}\n')
    state, lines, _ = _poll(tailer, state)
    seen += lines
    state, lines, _ = _poll(tailer, state)
    assert lines == []
    expected = [b'{"n":%d}\n' % i for i in [*range(8), 100, 101]]
    assert sorted(seen) == sorted(expected)


def test_state_survives_a_round_trip_and_a_gzip_of_a_fully_read_file_is_not_reread(tmp_path):
    log = tmp_path / "falco.json"
    log.write_bytes(b'{"x":1}\n{"x":2}\n')
    tailer = Tailer({"falco": [str(tmp_path / "falco*")]}, chunk_lines=10, max_line_bytes=1000)
    state, lines, _ = _poll(tailer, TailState())
    assert len(lines) == 2
    state = TailState.from_json(state.to_json())
    with open(log, "rb") as src, gzip.open(str(log) + ".1.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(log)
    state, lines, _ = _poll(tailer, state)
    assert lines == []


def test_an_oversized_line_is_dead_lettered_and_the_next_line_read(tmp_path):
    log = tmp_path / "audit.log"
    log.write_bytes(b"x" * 5000)
    tailer = Tailer({"audit": [str(tmp_path)]}, chunk_lines=10, max_line_bytes=1000)
    state, lines, dead = _poll(tailer, TailState())
    assert lines == [] and len(dead) == 1
    assert "max_line_bytes" in dead[0]["kubehunt"]["dead_letter"]["reason"]
    with open(log, "ab") as fh:
        fh.write(b'yyy\n{"ok":1}\n')
    state, lines, dead = _poll(tailer, state)
    assert lines == [b'{"ok":1}\n'] and dead == []
