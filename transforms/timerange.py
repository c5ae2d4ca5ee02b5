"""Time ranges for backfills: parse `--since/--until`, place each event, and plan which files to read.

A backfill processes exactly the events whose own time (``@timestamp``, as the normaliser sets it)
falls in ``[since, until)``. Times are compared in epoch milliseconds: ``since`` and ``until`` are
whole milliseconds, so ``floor_ms(t) in [since, until)`` is exactly ``t in [since, until)`` even for
nanosecond event times.

Three places outside the range matter to the pipeline (``TimeRange.place``):

- ``before``: older than ``since``; not written, only pod -> service-account facts go to the join;
- ``tail``: in ``[until, until + window]``; not written, but a service account's actions there still
  join an alert just before ``until`` (the join's own window), so incidents are complete;
- ``after``: later still; not written, facts only.

``plan_files`` decides per file, cheaply and before the job starts, whether it can hold events of the
range (or of its tail), from rotation names (kube-apiserver's lumberjack names, logrotate's dateext
names) or, for other files, their first and last lines. ``TimeRange`` is plain, picklable data.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Callable, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from transforms.correlate import epoch_ms

IN, BEFORE, TAIL, AFTER = "", "before", "tail", "after"
PLACES = (BEFORE, TAIL, AFTER)

NEG_INF = -(2 ** 62)
POS_INF = 2 ** 62


class TimeRangeError(ValueError):
    """A `--since`/`--until`/`--tz` value that cannot be read; the message names the option."""


# ---------------------------------------------------------------------------------------------
# Parsing `--since` / `--until`

_RELATIVE = re.compile(r"([+-])(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def zone(name: str | None) -> ZoneInfo | timezone:
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeRangeError(f"--tz {name!r} is not a known time zone (examples: UTC, Europe/Paris)") from None


def parse_when(text: str, *, option: str = "--since", tz: str | None = None,
               now: datetime | None = None) -> datetime:
    """`2026-01-15T14:00:00Z`, `2026-01-15T14:00:00+01:00`, `2026-01-15` (midnight), `now`, `today`,
    `yesterday` (midnight in `tz`), or an offset from now (`-24h`, `-7d`, `-90m`, `+1h`) -> aware UTC.

    Times without an offset are in `tz` (default UTC).
    """
    zone_ = zone(tz)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    value = text.strip()
    low = value.lower()
    if low == "now":
        return now
    if low in ("today", "yesterday"):
        day = now.astimezone(zone_).date() - timedelta(days=1 if low == "yesterday" else 0)
        return datetime.combine(day, dtime(0), tzinfo=zone_).astimezone(timezone.utc)
    m = _RELATIVE.fullmatch(low)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        return now + sign * timedelta(seconds=float(m.group(2)) * _UNITS_S[m.group(3)])
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), dtime(0))
        else:
            parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise TimeRangeError(f"{option} {text!r} is not a time: use RFC 3339 (2026-01-15T14:00:00Z), a date "
                             "(2026-01-15), now, today, yesterday, or an offset such as -24h or -7d") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone_)
    return parsed.astimezone(timezone.utc)


def to_ms(when: datetime) -> int:
    """Aware datetime -> epoch ms (floor), exactly (no float rounding)."""
    delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ms_text(t_ms: int) -> str:
    if t_ms <= NEG_INF:
        return "-inf"
    if t_ms >= POS_INF:
        return "+inf"
    return datetime.fromtimestamp(t_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------------------------------------
# Placing events


@dataclass(frozen=True)
class TimeRange:
    """`[since_ms, until_ms)`, plus the join's tail `[until_ms, until_ms + tail_ms]`."""
    since_ms: int
    until_ms: int
    tail_ms: int = 0

    def __post_init__(self):
        if self.until_ms <= self.since_ms:
            raise TimeRangeError(f"--until ({ms_text(self.until_ms)}) must be after --since ({ms_text(self.since_ms)})")

    @property
    def tail_end_ms(self) -> int:
        return self.until_ms + self.tail_ms

    def place_ms(self, t_ms: int) -> str:
        if t_ms < self.since_ms:
            return BEFORE
        if t_ms < self.until_ms:
            return IN
        return TAIL if t_ms <= self.tail_end_ms else AFTER

    def place(self, doc: dict) -> str:
        """Where a normalised document falls (`IN` is the empty string, so `if place:` means outside).

        A document without a usable time cannot be proven outside; it stays in (the normaliser
        dead-letters events without a time, so this does not happen with its output).
        """
        ts = doc.get("@timestamp")
        if not isinstance(ts, str):
            return IN
        try:
            return self.place_ms(epoch_ms(ts))
        except ValueError:
            return IN

    @staticmethod
    def join_only(place: str, doc: dict, tag: Callable[[dict], Iterable[str]], extract: Callable[[dict], list]) -> list:
        """The correlation elements an outside document still contributes: pod -> SA facts always,
        and, in the tail, a service account's actions (tagged first, so `confirms` sees the hunts).
        Never alerts: an incident is only made for an alert inside the range."""
        from transforms.correlate import AlertSeen, PodFact
        if place == TAIL:
            tag(doc)
            return [e for e in extract(doc) if not isinstance(e, AlertSeen)]
        return [e for e in extract(doc) if isinstance(e, PodFact)]


# ---------------------------------------------------------------------------------------------
# Planning files

# kube-apiserver (lumberjack): audit-2026-01-15T14-22-00.000.log[.gz]; the name is the rotation time, UTC.
_LUMBERJACK = re.compile(r"^(?P<base>.+)-(?P<ts>\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3})(?P<ext>\.[^/]*)?$")
# logrotate dateext (how Falco's file_output and falcosidekick's syslog are rotated): events.json-20260115[.gz],
# -2026011514 (hourly), or .2026-01-15; the date is the rotation day in the host's zone (`--tz`).
_DATEEXT = re.compile(r"^(?P<base>.+?)[-.](?P<ts>\d{8}(?:\d\d)?|\d{4}-\d\d-\d\d)(?:-\d+)?(?P<gz>\.(?:gz|bz2|zst|xz))?$")


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class FilePlan:
    """What a backfill does with one file: `range` (read and write), `tail` (read for the join only),
    or `skip`; `lo_ms`/`hi_ms` bound its events' own times and `how` says where the bounds came from."""
    source: str
    file: FileInfo
    role: str
    lo_ms: int
    hi_ms: int
    how: str
    reason: str = ""


def rotation_time(name: str, tz: str | None = None) -> tuple[str, str, int, int] | None:
    """(family, kind, rotated_at_ms, resolution_ms) from a rotated file's name, else None.

    ``family`` groups the rotations of one log (same directory and base name)."""
    m = _LUMBERJACK.match(name)
    if m:
        when = datetime.strptime(m.group("ts"), "%Y-%m-%dT%H-%M-%S.%f").replace(tzinfo=timezone.utc)
        ext = (m.group("ext") or "").removesuffix(".gz")
        return f"{m.group('base')}{ext}", "lumberjack", to_ms(when), 1
    m = _DATEEXT.match(name)
    if m:
        ts = m.group("ts").replace("-", "")
        try:
            when = datetime.strptime(ts, "%Y%m%d%H" if len(ts) == 10 else "%Y%m%d")
        except ValueError:
            return None
        step = 3600_000 if len(ts) == 10 else 86400_000
        return m.group("base"), "dateext", to_ms(when.replace(tzinfo=zone(tz))), step
    return None


def plan_files(source: str, files: list[FileInfo], rng: TimeRange, *, slack_ms: int,
               peek: Callable[[str, str], tuple[int | None, int | None]], tz: str | None = None) -> list[FilePlan]:
    """Decide for each file of one source whether it can hold events of the range or its tail.

    - A rotated name gives the end: the file holds events up to its rotation time (dateext: up to the
      end of the day or hour after the named one). The previous rotation of the same log gives the start, less
      `slack_ms`: an audit event's own time is when the request was received, and a long request
      (a watch) is written when it completes, after the rotation that preceded it.
    - Other files (the live `audit.log`, numbered rotations `events.json.1[.gz]`): the live file of a
      rotated family starts at the family's last rotation; otherwise `peek(source, path)` reads the
      first (and, uncompressed, the last) event time, widened by `slack_ms`.
    """
    rotated: dict[str, list[tuple[int, str]]] = {}
    named: dict[str, tuple[str, str, int, int]] = {}
    for f in files:
        info = rotation_time(os.path.basename(f.path), tz)
        if info:
            family = os.path.join(os.path.dirname(f.path), info[0])
            named[f.path] = (family,) + info[1:]
            rotated.setdefault(family, []).append((info[2], f.path))
    for times in rotated.values():
        times.sort()
    out = []
    for f in files:
        lo, hi, how = NEG_INF, POS_INF, "unknown (read whole)"
        if f.path in named:
            family, kind, at, step = named[f.path]
            times = rotated[family]
            index = times.index((at, f.path))
            # dateext names the rotation day, or with `dateyesterday` the day before it: the file can
            # hold events up to the end of the day (hour) after the named one.
            hi = at + (2 * step - 1 if kind == "dateext" else 0)
            how = f"rotation name ({kind})"
            if index > 0:
                lo = times[index - 1][0] - slack_ms
                how += ", previous rotation"
        else:
            # The live file of a rotated family (`audit.log` next to `audit-<time>.log.gz`).
            stem, ext = os.path.splitext(f.path)
            family_times = rotated.get(stem + ext) or rotated.get(stem) or rotated.get(f.path)
            if family_times:
                lo, how = family_times[-1][0] - slack_ms, "live file after the last rotation"
            first, last = peek(source, f.path)
            if first is not None and lo == NEG_INF:
                lo, how = first - slack_ms, "first line"
            if last is not None:
                hi = last + slack_ms
                how += " + last line"
        if hi < rng.since_ms:
            out.append(FilePlan(source, f, "skip", lo, hi, how, f"ends before --since ({how})"))
        elif lo > rng.tail_end_ms:
            out.append(FilePlan(source, f, "skip", lo, hi, how, f"starts after --until + window ({how})"))
        elif lo >= rng.until_ms:
            out.append(FilePlan(source, f, "tail", lo, hi, how))
        else:
            out.append(FilePlan(source, f, "range", lo, hi, how))
    return out
