"""An in-memory Beam filesystem (`mem://`), to run kubehunt end to end on a filesystem that is not the
local one, through the same `FileSystems` calls that `gs://` and `s3://` go through.

Beam's Python SDK ships no in-memory filesystem (its Java SDK does); Beam finds a filesystem by its
`scheme()` among the subclasses of `apache_beam.io.filesystem.FileSystem`, so importing this module
registers `mem://`. The store is per process: in-process runner only.
"""
from __future__ import annotations

import fnmatch
import io
import time

from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem


class _Closing(io.BytesIO):
    def __init__(self, store: dict, path: str):
        super().__init__()
        self._store, self._path = store, path

    def close(self):
        if not self.closed:
            self._store[self._path] = (self.getvalue(), time.time())
        super().close()


class InMemoryFileSystem(FileSystem):
    _files: dict[str, tuple[bytes, float]] = {}

    @classmethod
    def scheme(cls):
        return "mem"

    @classmethod
    def put(cls, path: str, data: bytes) -> None:
        cls._files[path] = (data, time.time())

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, (data, mtime) in sorted(self._files.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), mtime)

    def match(self, patterns, limits=None):
        from apache_beam.io.filesystem import MatchResult

        out = []
        for pattern in patterns:
            found = [FileMetadata(p, len(d), m) for p, (d, m) in sorted(self._files.items())
                     if fnmatch.fnmatchcase(p, pattern)]
            out.append(MatchResult(pattern, found))
        return out

    def _wrap(self, handle, path, compression_type):
        if compression_type == CompressionTypes.AUTO:
            compression_type = CompressionTypes.detect_compression_type(path)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return handle
        return CompressedFile(handle, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._wrap(_Closing(self._files, path), path, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        if path not in self._files:
            raise BeamIOError(f"no such file {path}")
        return self._wrap(io.BytesIO(self._files[path][0]), path, compression_type)

    def copy(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names):
            self._files[dst] = self._files[src]

    def rename(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names):
            self._files[dst] = self._files.pop(src)

    def exists(self, path):
        return path in self._files

    def size(self, path):
        return len(self._files[path][0])

    def last_updated(self, path):
        return self._files[path][1]

    def checksum(self, path):
        return str(hash(self._files[path][0]))

    def metadata(self, path):
        data, mtime = self._files[path]
        return FileMetadata(path, len(data), mtime)

    def delete(self, paths):
        for path in paths:
            self._files.pop(path, None)
