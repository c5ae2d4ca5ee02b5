"""Progress a person can read, for `kubehunt run` and `kubehunt backfill`, drawn by the driver.

Beam's metrics reach the driver only when a job has finished on the local runners, so the workers
of the per-event stage (``transforms.process``) report through a small *progress directory* instead:
each DoFn instance keeps its running totals (bytes and lines of each input file, events, dead letters)
in its own JSON file there, replaced atomically every 0.25 s and when a new file starts. The driver sums the
files and draws:

- on a terminal, a live ``tqdm`` line: input bytes done / total (for ETA), files done / total,
  events, events/s, dead letters;
- elsewhere (a log, a scheduler), one plain line per interval, from the driver alone.

This works on the in-process and multi-process local runners (workers share the driver's file
system). On a distributed runner the directory does not exist on the workers: they skip reporting,
and the driver says progress is not available. Totals: a file's size, or for gzip its trailer
(uncompressed size mod 4 GiB); a file is done when its bytes reach its total (blank lines are not
counted, so a file can stay short of it until the end of the job, when everything is done).
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import threading
import time

from transforms.progress import ProgressWriter  # noqa: F401 - the worker side

log = logging.getLogger("kubehunt.progress")


def expected_bytes(path: str, size: int) -> int:
    """Bytes of lines the reader will hand over: the size, or a gzip's uncompressed size (trailer)."""
    if not path.endswith(".gz"):
        return size
    try:
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            fh.seek(max(0, size - 4))
            isize = struct.unpack("<I", fh.read(4))[0]
        # ISIZE is mod 2^32: a member over 4 GiB wraps, so never report less than the compressed size.
        while isize < size:
            isize += 1 << 32
        return isize
    except (OSError, struct.error, ValueError):
        return size * 8   # a typical ratio for JSON logs; only the ETA depends on it


def read_snapshot(directory: str, totals: dict[str, int]) -> dict:
    done_bytes, events, dead, lines, per_file = 0, 0, 0, 0, {}
    for path in glob.glob(os.path.join(directory, "*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            continue   # being replaced: next time
        events += state["events"]
        dead += state["dead"]
        lines += state["lines"]
        for origin, n in state["bytes"].items():
            per_file[origin] = per_file.get(origin, 0) + n
    for origin, n in per_file.items():
        done_bytes += min(n, totals.get(origin, n))
    files_done = sum(1 for origin, total in totals.items() if per_file.get(origin, 0) >= total)
    return {"bytes": done_bytes, "events": events, "dead": dead, "lines": lines, "files_done": files_done}


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def log_line(snap: dict, files_total: int, bytes_total: int, elapsed: float) -> str:
    rate = snap["events"] / elapsed if elapsed > 0 else 0.0
    share = snap["bytes"] / bytes_total if bytes_total else 0.0
    eta = (elapsed / share - elapsed) if share > 0.001 else None
    return (f"progress: files {snap['files_done']}/{files_total}, {snap['events']:,} events ({rate:,.0f}/s), "
            f"{snap['dead']:,} dead letters, {share:.0%} of input, ETA {_eta(eta)}")


class Watcher:
    """Driver side: polls the progress directory from a thread until the job ends."""

    def __init__(self, files, mode: str, interval_s: float, stream=None):
        self.directory = tempfile.mkdtemp(prefix="kubehunt-progress-")
        self._totals = {f.path: expected_bytes(f.path, f.size) for f in files}
        self._mode = mode
        self._interval = interval_s
        self._stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = None
        self._bar = None
        self._started = time.monotonic()
        self.lines_logged: list[str] = []

    def _snapshot(self) -> dict:
        return read_snapshot(self.directory, self._totals)

    def _draw_bar(self, snap: dict) -> None:
        bar = self._bar
        bar.n = min(snap["bytes"], bar.total or snap["bytes"])
        elapsed = time.monotonic() - self._started
        bar.set_postfix_str(f"files {snap['files_done']}/{len(self._totals)}, {snap['events']:,} events "
                            f"({snap['events'] / elapsed if elapsed else 0:,.0f}/s), {snap['dead']:,} dead",
                            refresh=False)
        bar.refresh()

    def _loop(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(0.5 if self._mode == "bar" else min(0.5, self._interval)):
            snap = self._snapshot()
            if self._mode == "bar":
                self._draw_bar(snap)
            elif time.monotonic() - last_log >= self._interval:
                last_log = time.monotonic()
                line = log_line(snap, len(self._totals), sum(self._totals.values()), last_log - self._started)
                self.lines_logged.append(line)
                log.info("%s", line)

    def start(self) -> "Watcher":
        if self._mode == "off":
            return self
        if self._mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=sum(self._totals.values()) or None, unit="B", unit_scale=True,
                             desc="kubehunt", file=self._stream, dynamic_ncols=True, leave=True)
        self._thread = threading.Thread(target=self._loop, name="kubehunt-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self, completed: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        snap = self._snapshot()
        if self._bar is not None:
            if completed:   # the job is over: every file is done, whatever the blank lines
                snap["files_done"] = len(self._totals)
                snap["bytes"] = self._bar.total or snap["bytes"]
            self._draw_bar(snap)
            self._bar.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def resolve_mode(mode: str, stream=None) -> str:
    stream = stream or sys.stderr
    if mode == "auto":
        return "bar" if getattr(stream, "isatty", lambda: False)() else "log"
    return mode


@contextlib.contextmanager
def watch(files, mode: str = "auto", interval_s: float = 15.0, stream=None):
    """``with watch(files) as w:`` set ``ProcessSettings.progress_dir = w.directory``, run the job."""
    watcher = Watcher(files, resolve_mode(mode, stream), interval_s, stream).start()
    completed = False
    try:
        yield watcher
        completed = True
    finally:
        watcher.stop(completed)


@contextlib.contextmanager
def watch_run(cfg, mode: str = "auto", interval_s: float = 15.0):
    """For `kubehunt run`: the config's inputs are listed here; yields the config with progress on."""
    from dataclasses import replace

    from pipeline.backfill import list_files

    files = list_files([path for _, paths in cfg.inputs() for path in paths])
    with watch(files, mode, interval_s) as watcher:
        yield replace(cfg, process=replace(cfg.process, progress_dir=watcher.directory))
