"""The worker side of progress reports: running totals in a small file the driver polls.

See ``pipeline.progress`` for why (local runners give the driver Beam metrics only at the end) and
for the driver side. A writer is made in ``DoFn.setup()`` from a directory named in the settings; when
that directory does not exist on the worker (a distributed runner), there is no writer.
"""
from __future__ import annotations

import json
import os
import time
import uuid

FLUSH_EVERY_S = 0.25


class ProgressWriter:
    """Worker side: one per DoFn instance, created in ``setup()`` from the settings' directory."""

    def __init__(self, directory: str):
        self._path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        self._state = {"bytes": {}, "lines": 0, "events": 0, "dead": 0}
        self._origin: str | None = None
        self._last = 0.0

    @classmethod
    def maybe(cls, directory: str | None) -> "ProgressWriter | None":
        return cls(directory) if directory and os.path.isdir(directory) else None

    def add(self, origin: str, nbytes: int, lines: int, events: int, dead: int) -> None:
        state = self._state
        state["bytes"][origin] = state["bytes"].get(origin, 0) + nbytes
        state["lines"] += lines
        state["events"] += events
        state["dead"] += dead
        # A write and rename costs ~1-2 ms here, 1-2% of a 1000-line chunk: at most every FLUSH_EVERY_S,
        # and whenever a new file starts, so a finished file shows as done.
        now = time.monotonic()
        if origin != self._origin or now - self._last >= FLUSH_EVERY_S:
            self._origin, self._last = origin, now
            self.flush()

    def flush(self) -> None:
        tmp = self._path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self._state, fh)
            os.replace(tmp, self._path)
        except OSError:   # the driver removed the directory (job over): nothing left to report to
            pass
