"""The `--output-dir` sink (transforms/files.py): every item written once, in bounded files, the same
files again when a bundle is retried."""
from __future__ import annotations

from pathlib import Path

import orjson

from transforms import files
from transforms.sink import SinkItem


def _items(n: int, size: int) -> list[SinkItem]:
    return [SinkItem("incidents", f"incident-{i:04d}", orjson.dumps({"i": i, "pad": "x" * size}))
            for i in range(n)]


def _run_bundle(fn: files.WriteNdjsonFn, elements) -> None:
    fn.start_bundle()
    for element in elements:
        fn.process(element)
    fn.finish_bundle()


def _written(folder: Path) -> dict[str, list[bytes]]:
    return {p.name: p.read_bytes().splitlines() for p in sorted(folder.glob("*.ndjson"))}


def test_single_items_are_flushed_before_the_bundle_ends_and_each_is_written_once(tmp_path, monkeypatch):
    # A bundle can be a whole input (the local runner's): its incidents must not wait in memory.
    monkeypatch.setattr(files, "SINGLES_BYTES", 10_000)
    items = _items(25, 1_000)           # ~1 KB each: a file every 10 items
    fn = files.WriteNdjsonFn(str(tmp_path), "out")
    fn.setup()
    written_before_end = []
    fn.start_bundle()
    for item in items:
        fn.process(item)
        written_before_end.append(len(list(tmp_path.glob("*.ndjson"))))
    fn.finish_bundle()
    assert written_before_end[8] == 0 and written_before_end[9] == 1 and written_before_end[-1] == 2
    out = _written(tmp_path)
    assert len(out) == 3
    lines = [line for body in out.values() for line in body]
    assert sorted(lines) == sorted(i.body for i in items)       # every item, exactly once
    assert not list(tmp_path.glob(".*.tmp"))                    # no temporary file left


def test_a_retried_bundle_rewrites_the_same_files(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "SINGLES_BYTES", 10_000)
    items = _items(25, 1_000)
    fn = files.WriteNdjsonFn(str(tmp_path), "out")
    fn.setup()
    _run_bundle(fn, items)
    first = _written(tmp_path)
    _run_bundle(fn, items)              # the runner retries the bundle: same elements, same order
    assert _written(tmp_path) == first


def test_chunks_become_one_file_each_and_singles_one_file_per_bundle(tmp_path):
    chunk_a, chunk_b = _items(3, 10), _items(2, 10)[::-1]
    singles = [SinkItem("dead_letters", f"dl-{i}", b'{"d":%d}' % i) for i in (3, 1, 2)]
    fn = files.WriteNdjsonFn(str(tmp_path), "x")
    fn.setup()
    _run_bundle(fn, [chunk_a, *singles, chunk_b, []])
    out = _written(tmp_path)
    assert len(out) == 3
    dead = [body for name, body in out.items() if name.startswith("x-dead_letters-")]
    assert dead == [[b'{"d":1}', b'{"d":2}', b'{"d":3}']]   # sorted by id: any arrival order, same file
