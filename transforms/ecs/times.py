"""Event times: any source time -> RFC 3339 UTC text at the source's own precision, and back to epoch ms."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

_ISO = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?\s*([+-]\d\d:?\d\d|Z|z)?")


def parse_time(value: Any) -> str | None:
    """Any event time -> RFC 3339 UTC text with the source's own precision (up to ns).

    Accepts RFC 3339 text (any offset) and integer/float epoch in ns, µs, ms or s.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, (int, float)):
        n = int(value)
        if abs(n) >= 10**17:
            secs, frac, digits = n // 10**9, n % 10**9, 9
        elif abs(n) >= 10**14:
            secs, frac, digits = n // 10**6, n % 10**6, 6
        elif abs(n) >= 10**11:
            secs, frac, digits = n // 10**3, n % 10**3, 3
        else:
            secs, frac, digits = n, 0, 0
        base = _second_text(secs)
        if base is None:
            return None
        return f"{base}.{frac:0{digits}d}Z" if digits else f"{base}Z"
    if isinstance(value, str):
        text = value.strip()
        # Fast path for what API servers and Falco write: `2024-05-07T18:54:19.341081180Z`.
        if len(text) >= 20 and text[-1] == "Z" and text[10] == "T" and (len(text) == 20 or text[19] == "."):
            frac = text[20:-1]
            if (not frac or frac.isdigit()) and text[:19].isascii():
                return text if _valid_second(text[:19]) else None
        m = _ISO.fullmatch(text)
        if not m:
            return None
        date, clock, frac, offset = m.groups()
        try:
            dt = datetime.fromisoformat(f"{date}T{clock}")
        except ValueError:
            return None
        if offset in (None, "Z", "z", "+00:00", "+0000", "-00:00", "-0000"):
            return f"{date}T{clock}{frac or ''}Z"
        offset = offset if ":" in offset else offset[:3] + ":" + offset[3:]
        try:
            utc = datetime.fromisoformat(f"{date}T{clock}{offset}").astimezone(timezone.utc)
        except (ValueError, OverflowError):
            return None
        return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}{frac or ''}Z"
    return None


@lru_cache(maxsize=8192)
def _valid_second(text: str) -> bool:
    """`YYYY-MM-DDTHH:MM:SS` is a real date and time (cached: a stream's events share their seconds)."""
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        return False


@lru_cache(maxsize=8192)
def _second_text(secs: int) -> str | None:
    """Epoch seconds -> `YYYY-MM-DDTHH:MM:SS` (cached: a stream's events share their seconds)."""
    try:
        return datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return None


def storable_time(rfc3339: str) -> bool:
    """`@timestamp` is `date_nanos` (nanosecond precision is kept): 1970-01-01 .. 2262-04-11."""
    return "1970" <= rfc3339[:4] <= "2261" and rfc3339[4] == "-"


def to_epoch_ms(rfc3339: str) -> int:
    """RFC 3339 UTC text -> integer epoch milliseconds (Beam's timestamp precision)."""
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    secs = int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return secs * 1000 + int((frac + "000")[:3])

