"""Stage 1 of the join: which service account an alert's pod runs as (keyed by (ns, pod)).

Facts (pod creates, pod-name claims of tokens, the ``--pods`` inventory) decide each alert's SA
with an order-independent rule (``decide``); a decision is re-emitted with a higher revision when a
fact arriving later changes it, so a late pod create still resolves the alert.
"""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from transforms.correlate.extract import pod_service_account
from transforms.correlate.messages import (SA_PREFIX, SA_SOURCES, TIMELESS, AlertCopy, AlertSeen, PodFact,
                                           Resolution)

UNRESOLVED = "unresolved"


def ts(t_ms: int) -> Timestamp:
    return Timestamp(micros=t_ms * 1000)


def buckets(t_ms: int, window_ms: int, bucket_ms: int) -> range:
    """Buckets overlapping [t, t + window] (both ends inclusive)."""
    return range(t_ms // bucket_ms, (t_ms + window_ms) // bucket_ms + 1)


def add_fact(facts: dict, fact) -> bool:
    """Keep the earliest time per (source, SA) of a pod's facts, the only thing ``decide`` reads;
    True when ``fact`` changed ``facts``."""
    key = (fact.source, fact.sa)
    known = facts.get(key)
    if known is not None and known <= fact.t_ms:
        return False
    facts[key] = fact.t_ms
    return True


def decide(facts: dict, ns: str, t_ms: int, window_ms: int, assume_default: bool):
    """Pick the pod's SA for an alert at t from facts {(source, sa): earliest time}.

    Order-independent: the best fact by (source rank, seen at/before t, latest such / earliest after,
    SA name). Facts after t + window are ignored (they cannot be the pod the alert saw and would make
    the answer depend on how long we wait). Returns (sa, source, rank) or None.
    """
    best_key, best = None, None
    horizon = t_ms + window_ms
    for (source, sa), f_ms in facts.items():
        if f_ms > horizon:
            continue
        before = f_ms <= t_ms
        key = (SA_SOURCES[source], before, f_ms if before else -f_ms, sa)
        if best_key is None or key > best_key:
            best_key, best = key, (sa, source, SA_SOURCES[source])
    if best is None and assume_default:
        return (f"{SA_PREFIX}{ns}:default", "assumed_default", 0)
    return best


class InventoryError(ValueError):
    """A `--pods` file that is not `kubectl get pods -A -o json` output; the message says why."""


def inventory_service_accounts(path: str) -> list[tuple[str, str, str]]:
    """`kubectl get pods -A -o json` (a List, or one Pod) -> [(namespace, pod, service account)]."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as err:
        raise InventoryError(f"{path}: cannot read a pod inventory: {err}") from None
    items = data.get("items") if isinstance(data, dict) and "items" in data else [data]
    if not isinstance(items, list):
        raise InventoryError(f"{path}: not a pod list (expected `kubectl get pods -A -o json` output)")
    out = []
    for index, pod in enumerate(items):
        meta = pod.get("metadata") if isinstance(pod, dict) else None
        ns = meta.get("namespace") if isinstance(meta, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if not (isinstance(ns, str) and ns and isinstance(name, str) and name):
            raise InventoryError(f"{path}: items[{index}] has no metadata.namespace/name")
        out.append((ns, name, f"{SA_PREFIX}{ns}:{pod_service_account(pod)}"))
    return out


class ReadPodInventoryFn(beam.DoFn):
    """`kubectl get pods -A -o json` -> timeless ``PodFact``s keyed by pod."""

    def process(self, path: str):
        for ns, name, sa in inventory_service_accounts(path):
            yield TimestampedValue(((ns, name), PodFact(ns, name, "inventory", sa, TIMELESS)), MIN_TIMESTAMP)


class ResolvePodFn(beam.DoFn):
    """Keyed by (ns, pod): decide each alert's SA; re-decide when a later-arriving fact changes it.

    Input: ``AlertSeen`` and ``PodFact``. Outputs (main) ``AlertCopy`` keyed by (SA, bucket) for the
    join, once per (alert, SA); ``RESOLUTIONS`` every decision as (alert id, ``Resolution``);
    ``UNRESOLVED`` one alert id per alert never resolved once the watermark passes t + window + lateness.
    """

    RESOLUTIONS = "resolutions"
    FACTS = ReadModifyWriteStateSpec("facts", PickleCoder())
    ALERTS = ReadModifyWriteStateSpec("alerts", PickleCoder())
    GC_AT = ReadModifyWriteStateSpec("gc_at", PickleCoder())
    GC = TimerSpec("gc", TimeDomain.WATERMARK)

    def __init__(self, window_ms: int, lateness_ms: int, bucket_ms: int, assume_default: bool):
        self._window_ms, self._lateness_ms = window_ms, lateness_ms
        self._bucket_ms, self._assume_default = bucket_ms, assume_default

    def process(self, element, facts_state=beam.DoFn.StateParam(FACTS),
                alerts_state=beam.DoFn.StateParam(ALERTS), gc_at=beam.DoFn.StateParam(GC_AT),
                gc=beam.DoFn.TimerParam(GC)):
        (ns, pod), value = element
        facts = facts_state.read() or {}
        alerts = alerts_state.read() or {}
        is_alert = type(value) is AlertSeen
        if not is_alert:
            if not add_fact(facts, value):
                return
            facts_state.write(facts)
            todo = list(alerts)
        else:
            if value.alert_id in alerts:
                # the same alert shipped twice
                return
            alerts[value.alert_id] = {"t": value.t_ms, "rule": value.rule, "rev": 0, "current": None, "sent": []}
            deadline = value.t_ms + self._window_ms + self._lateness_ms + 1
            if deadline > (gc_at.read() or -(2 ** 63)):
                gc_at.write(deadline)
                gc.set(ts(deadline))
            todo = [value.alert_id]
        changed = False
        for alert_id in todo:
            alert = alerts[alert_id]
            best = decide(facts, ns, alert["t"], self._window_ms, self._assume_default)
            if best is None or best == alert["current"]:
                continue
            changed = True
            alert["rev"] += 1
            alert["current"] = best
            sa, source, rank = best
            yield beam.pvalue.TaggedOutput(self.RESOLUTIONS, (alert_id, Resolution(
                alert["rev"], sa, source, rank, ns, pod, alert["t"], alert["rule"])))
            if sa not in alert["sent"]:
                alert["sent"].append(sa)
                for bucket in buckets(alert["t"], self._window_ms, self._bucket_ms):
                    yield ((sa, bucket), AlertCopy(alert_id, alert["t"]))
        if changed or is_alert:
            alerts_state.write(alerts)

    @on_timer(GC)
    def expire(self, alerts_state=beam.DoFn.StateParam(ALERTS), gc_at=beam.DoFn.StateParam(GC_AT)):
        # The pod's facts stay (a few bytes per pod); its alerts are past every possible late input.
        for alert_id, alert in (alerts_state.read() or {}).items():
            if alert["current"] is None:
                yield beam.pvalue.TaggedOutput(UNRESOLVED, alert_id)
        alerts_state.clear()
        gc_at.clear()
