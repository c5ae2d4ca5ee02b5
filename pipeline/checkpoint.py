"""The backfill checkpoint: which files a backfill of one range has finished, so a re-run skips them.

A backfill is identified by its *run key* (range, correlation window, destinations); each file by its
path, size and modification time, so a file that changed since (the live log grew) is not taken as
finished. Entries are ``started`` (written before the job runs) or ``finished`` (written after it
succeeded). A re-run that finds any entry of its run key is a re-run: it skips finished files and
turns on the id look-up of ``transforms.dedupe`` for the rest.

Two stores, both small and written by the driver only: a JSON file next to ``--output-dir`` output
(``.kubehunt-checkpoint.json``), or an Elasticsearch index (``kubehunt-checkpoints``, one document per
run key and file).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

from transforms.timerange import FileInfo

STARTED, FINISHED = "started", "finished"
FILE_NAME = ".kubehunt-checkpoint.json"
DEFAULT_INDEX = "kubehunt-checkpoints"
_MAPPING = {"dynamic": False, "properties": {
    "run_key": {"type": "keyword"}, "path": {"type": "keyword"}, "size": {"type": "long"},
    "mtime": {"type": "double"}, "status": {"type": "keyword"}, "updated": {"type": "date"}}}


def run_key(*parts: object) -> str:
    return hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def file_key(f: FileInfo) -> str:
    return f"{f.path}\x00{f.size}\x00{f.mtime:.6f}"


@dataclass
class Entry:
    path: str
    size: int
    mtime: float
    status: str


class FileCheckpoint:
    """JSON file `{run_key: {file_key: entry}}`, replaced atomically."""

    def __init__(self, directory: str):
        self.where = os.path.join(directory, FILE_NAME)

    def _read(self) -> dict:
        try:
            with open(self.where, encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {}

    def load(self, key: str) -> dict[str, Entry]:
        return {k: Entry(**v) for k, v in self._read().get(key, {}).items()}

    def mark(self, key: str, files: list[FileInfo], status: str) -> None:
        data = self._read()
        run = data.setdefault(key, {})
        for f in files:
            run[file_key(f)] = {"path": f.path, "size": f.size, "mtime": f.mtime, "status": status}
        os.makedirs(os.path.dirname(self.where) or ".", exist_ok=True)
        tmp = f"{self.where}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.where)


class EsCheckpoint:
    """One document per (run key, file) in a small index; refreshed on write so a re-run sees it."""

    def __init__(self, settings, index: str = DEFAULT_INDEX):
        self._settings = settings
        self.index = self.where = index

    def _client(self):
        return self._settings.client()

    def load(self, key: str) -> dict[str, Entry]:
        client = self._client()
        try:
            if not client.indices.exists(index=self.index):
                return {}
            out: dict[str, Entry] = {}
            resp = client.search(index=self.index, query={"term": {"run_key": key}}, size=10_000,
                                 sort=["_doc"], scroll="1m")
            while True:
                hits = resp["hits"]["hits"]
                if not hits:
                    break
                for hit in hits:
                    s = hit["_source"]
                    entry = Entry(s["path"], int(s["size"]), float(s["mtime"]), s["status"])
                    out[file_key(FileInfo(entry.path, entry.size, entry.mtime))] = entry
                resp = client.scroll(scroll_id=resp["_scroll_id"], scroll="1m")
            return out
        finally:
            client.close()

    def mark(self, key: str, files: list[FileInfo], status: str) -> None:
        from elasticsearch import helpers

        client = self._client()
        try:
            if not client.indices.exists(index=self.index):
                client.options(ignore_status=400).indices.create(
                    index=self.index, mappings=_MAPPING, settings={"number_of_replicas": 0})
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            actions = ({"_index": self.index, "_id": run_key(key, file_key(f)),
                        "_source": {"run_key": key, "path": f.path, "size": f.size, "mtime": f.mtime,
                                    "status": status, "updated": now}} for f in files)
            helpers.bulk(client, actions, refresh="wait_for")
        finally:
            client.close()


def finished_files(entries: dict[str, Entry], files: list[FileInfo]) -> set[str]:
    """Paths of `files` whose identity (path, size, mtime) the checkpoint lists as finished."""
    return {f.path for f in files if (e := entries.get(file_key(f))) is not None and e.status == FINISHED}
