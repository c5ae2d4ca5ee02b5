"""A three-day corpus cut the way real nodes cut it, for the backfill tests.

Audit events (``tests/builders/scenario.py``'s builder) from 2026-01-14 00:00Z to 2026-01-17 00:00Z, split
at kube-apiserver rotations into ``audit-<rotation time>.log.gz`` plus the live ``audit.log``; Falco
alerts split by logrotate (dateext) into ``falco.json-YYYYMMDD.gz`` plus the live ``falco.json``.
Planted: an alert in pod ``shop/web-1`` two minutes before ``UNTIL``, its service account's actions at
UNTIL - 1 min (in range), UNTIL + 5 and + 12 min (in a file rotated after UNTIL: join only) and
UNTIL + 45 min (past the window); and a long watch whose own time is before the previous rotation.
"""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.builders.scenario import Builder

MINUTE = 60_000
START = datetime(2026, 1, 14, tzinfo=timezone.utc)
SINCE = "2026-01-15T06:00:00Z"
UNTIL = "2026-01-15T22:30:00Z"
SA = "system:serviceaccount:shop:web"


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


UNTIL_MS = ms(datetime(2026, 1, 15, 22, 30, tzinfo=timezone.utc))
# Every 8 hours, plus one just after UNTIL so the actions after UNTIL sit in a file of their own.
ROTATIONS = sorted([START + timedelta(hours=8 * i) for i in range(1, 9)]
                   + [datetime(2026, 1, 15, 22, 34, tzinfo=timezone.utc)])


def build(out: Path, per_hour: int = 40, seed: int = 11) -> dict:
    b = Builder(seed)
    rng = b.rng
    hours = 72
    for h in range(hours):
        for _ in range(per_hour):
            t = ms(START) + h * 3600_000 + rng.randrange(3600_000)
            user = rng.choice(["alice", "system:serviceaccount:kube-system:replicaset-controller",
                               "system:serviceaccount:data:etl"])
            verb, res = rng.choice([("get", "configmaps"), ("list", "pods"), ("get", "secrets"), ("watch", "services")])
            b.audit(t, user, verb, res, "data", "x")
        for _ in range(3):
            b.alert(ms(START) + h * 3600_000 + rng.randrange(3600_000), "data", f"etl-{rng.randrange(4)}")
    # The planted chain.
    b.pod_create(UNTIL_MS - 8 * 3600_000, "shop", "web-1", "web")
    planted = b.alert(UNTIL_MS - 2 * MINUTE, "shop", "web-1")
    in_range = b.audit(UNTIL_MS - MINUTE, SA, "get", "secrets", "shop", "db")
    after = [b.audit(UNTIL_MS + 5 * MINUTE, SA, "create", "rolebindings", "shop", "admin"),
             b.audit(UNTIL_MS + 12 * MINUTE, SA, "list", "secrets", "shop")]
    too_late = b.audit(UNTIL_MS + 45 * MINUTE, SA, "get", "secrets", "shop", "db")
    # A watch received 90 s before the 2026-01-15T08:00 rotation, logged (completed) after it.
    watch_ms = ms(datetime(2026, 1, 15, 8, tzinfo=timezone.utc)) - 90_000
    b.audit(watch_ms, "alice", "watch", "pods", "data")
    b.scenario.audit[-1]["stageTimestamp"] = _iso(watch_ms + 10 * MINUTE)

    out.mkdir(parents=True, exist_ok=True)
    audit = sorted(b.scenario.audit, key=lambda r: r["stageTimestamp"])   # written when the stage ends
    falco = sorted(b.scenario.falco, key=lambda r: r["time"])
    _cut(audit, "stageTimestamp", ROTATIONS, out, lambda t: f"audit-{t:%Y-%m-%dT%H-%M-%S}.000.log.gz", "audit.log")
    days = [START + timedelta(days=d) for d in (1, 2)]   # logrotate at midnight
    _cut(falco, "time", days, out, lambda t: f"falco.json-{t:%Y%m%d}.gz", "falco.json")
    return {"planted_alert": planted, "in_range_action": in_range, "after_until": after, "too_late": too_late,
            "audit": audit, "falco": falco}


def _iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _cut(records, key, rotations, out: Path, name, live: str) -> None:
    parts: list[list[dict]] = [[] for _ in range(len(rotations) + 1)]
    for record in records:
        t = datetime.fromisoformat(record[key].replace("Z", "+00:00"))
        parts[sum(1 for r in rotations if r <= t)].append(record)
    for i, part in enumerate(parts):
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in part).encode()
        if i < len(rotations):
            (out / name(rotations[i])).write_bytes(gzip.compress(body))
        else:
            (out / live).write_bytes(body)


def oracle(directory: Path, since: str, until: str) -> dict[str, set[str]]:
    """Independently of the pipeline: the audit IDs and alert uuids whose own time is in [since, until)."""
    lo, hi = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (since, until))
    out = {"audit": set(), "falco": set()}
    for path in sorted(directory.iterdir()):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            for line in fh:
                r = json.loads(line)
                source, key, ident = (("audit", "requestReceivedTimestamp", "auditID") if "auditID" in r
                                      else ("falco", "time", "uuid"))
                # Microsecond text: fromisoformat reads it exactly.
                if lo <= datetime.fromisoformat(r[key].replace("Z", "+00:00")) < hi:
                    out[source].add(r[ident])
    return out
