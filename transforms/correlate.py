"""Escalation chains: join Falco alerts to their pod's service-account activity within a window.

An incident is a Falco alert at time t in pod (ns, pod), resolved to the pod's service account SA,
plus every audit event by SA (``user.name``, or the impersonated ``user.effective.name``) with
t <= time <= t + window (inclusive, millisecond precision). See docs/correlation.md for the design,
its guarantees and the measurements; in short:

``extract(doc)`` (hot loop, once per event) turns a document into 0-2 small tuples:

- ``("A", ns, pod, t_ms, alert_id, rule)``                       a Falco alert in a pod;
- ``("E", sa, t_ms, event_id, verb, resource, hunts, confirms)``  an audit event by a service account;
- ``("F", ns, pod, source, sa, t_ms)``                           a pod -> SA fact (pod create, pod-name claim).

``CorrelateByServiceAccount`` then runs three keyed stateful DoFns (global window, event-time
timers only for garbage collection, so it behaves the same on batch and streaming runners):

1. ``ResolvePodFn`` keyed by (ns, pod): facts (+ the ``--pods`` inventory) decide each alert's SA
   with an order-independent rule; a decision is re-emitted (with a higher revision) when a fact
   arriving later changes it, so a late pod create still resolves the alert.
2. ``JoinWindowFn`` keyed by (SA, time bucket of ``bucket`` = window by default): a symmetric
   interval join. Each alert is copied to the <= 2 buckets overlapping [t, t + window]; whichever of
   (alert, event) arrives second emits the pair, so each pair is emitted once whatever the order.
   State per key is one bucket's events, cleared by a timer at bucket end + window + lateness.
3. ``AssembleIncidentFn`` keyed by alert id: builds the incident from the pairs of the alert's
   current SA. Batch: one final document per incident (timer at t + window + lateness). Streaming:
   also early versions (first action, every doubling of the action count, confirmation, SA change).
"""
from __future__ import annotations

import typing

import json
from datetime import datetime, timedelta, timezone
from typing import Iterable

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (BagStateSpec, ReadModifyWriteStateSpec, TimerSpec,
                                              on_timer)
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms.ecs import to_epoch_ms
from transforms.records import METRICS_NAMESPACE

SA_PREFIX = "system:serviceaccount:"
POD_CLAIM = "authentication.kubernetes.io/pod-name"

# Sources of a pod -> SA decision, best first (rank). `assumed_default` only with --assume-default-sa.
SA_SOURCES = {"pod_create": 3, "pod_claim": 2, "inventory": 1, "assumed_default": 0}
CONFIRMING_HUNTS = frozenset({"rbac-modification", "secret-access-unexpected-sa"})
RBAC_RESOURCES = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings"})
RBAC_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SECRET_VERBS = frozenset({"get", "list"})

SEVERITY_CONFIRMED = 99  # critical
SEVERITY_CANDIDATE = 73  # high
INCIDENT_DATASET = "kubehunt.incidents"
# Inventory facts carry no time: they count as "before the alert" and lose every time tie-break.
_TIMELESS = -(2 ** 62)

UNRESOLVED = "unresolved"


_MINUTES: dict[str, int] = {}


def epoch_ms(text: str) -> int:
    """`@timestamp` (RFC 3339 UTC, as the normaliser writes it) -> epoch ms, cheaply.

    strptime costs ~10 us; events of one minute share a prefix, so the minute's epoch is cached and
    the seconds and milliseconds are read from fixed positions. Anything unusual takes the slow path.
    """
    if len(text) >= 20 and text[16] == ":" and text[19] in ".Z":
        minute = _MINUTES.get(text[:16])
        if minute is None:
            if len(_MINUTES) > 4096:
                _MINUTES.clear()
            minute = _MINUTES[text[:16]] = to_epoch_ms(text[:16] + ":00Z")
        frac = text[20:23] if text[19] == "." else ""
        if frac.isdigit() or not frac:
            return minute + int(text[17:19]) * 1000 + (int((frac + "00")[:3]) if frac else 0)
    return to_epoch_ms(text)


# ---------------------------------------------------------------------------------------------
# Per-event extraction (hot loop: keep the common "irrelevant event" path to a few dict lookups)


def service_account(user: object) -> str | None:
    """`system:serviceaccount:NS:NAME` -> itself; anything else (incl. `system:serviceaccounts:...`) -> None."""
    if isinstance(user, str) and user.startswith(SA_PREFIX):
        parts = user.split(":")
        if len(parts) == 4 and parts[2] and parts[3]:
            return user
    return None


def confirms(verb: str | None, resource: str | None, subresource: str | None, hunts: Iterable[str]) -> bool:
    """An RBAC modification or a secret read (by hunt tag, or by verb/resource when untagged)."""
    if any(h in CONFIRMING_HUNTS for h in hunts):
        return True
    if subresource:
        return False
    return ((resource in RBAC_RESOURCES and verb in RBAC_VERBS)
            or (resource == "secrets" and verb in SECRET_VERBS))


def _failed(audit: dict) -> bool:
    status = audit.get("responseStatus")
    code = status.get("code") if isinstance(status, dict) else None
    return isinstance(code, int) and code >= 400


def _pod_service_account(pod: object) -> str:
    spec = pod.get("spec") if isinstance(pod, dict) else None
    if isinstance(spec, dict):
        name = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if isinstance(name, str) and name:
            return name
    return "default"


def extract(doc: dict) -> list:
    """The correlation elements of one ECS document (usually none); see the module docstring."""
    event = doc.get("event")
    dataset = event.get("dataset") if isinstance(event, dict) else None
    if dataset == "kubernetes.audit_logs":
        return _extract_audit(doc, event)
    if dataset == "falco.alerts":
        return _extract_falco(doc, event)
    return []


def _extract_falco(doc: dict, event: dict) -> list:
    orch = doc.get("orchestrator")
    if not isinstance(orch, dict):
        return []
    ns = orch.get("namespace")
    resource = orch.get("resource")
    pod = resource.get("name") if isinstance(resource, dict) else None
    if not (isinstance(ns, str) and ns and isinstance(pod, str) and pod):
        return []  # host-level alert: no pod to follow
    rule = doc.get("rule")
    return [("A", ns, pod, epoch_ms(doc["@timestamp"]), event["id"],
             rule.get("name") if isinstance(rule, dict) else None)]


def _extract_audit(doc: dict, event: dict) -> list:
    user = doc.get("user")
    if not isinstance(user, dict):
        return []
    name = user.get("name")
    effective = user.get("effective")
    eff_name = effective.get("name") if isinstance(effective, dict) else None
    by_sa = isinstance(name, str) and name.startswith(SA_PREFIX)
    eff_sa = isinstance(eff_name, str) and eff_name.startswith(SA_PREFIX)
    orch = doc.get("orchestrator") or {}
    res = orch.get("resource") or {}
    resource = res.get("type")
    is_pod_create = resource == "pods" and event.get("action") == "create" and not res.get("subresource")
    if not (by_sa or eff_sa or is_pod_create):
        return []
    audit = (doc.get("kubernetes") or {}).get("audit") or {}
    failed = _failed(audit)
    out: list = []
    t_ms = None
    if is_pod_create and not failed:
        ns, pod = orch.get("namespace"), res.get("name")
        if ns and pod:
            t_ms = epoch_ms(doc["@timestamp"])
            sa = f"{SA_PREFIX}{ns}:{_pod_service_account(audit.get('requestObject'))}"
            out.append(("F", ns, pod, "pod_create", sa, t_ms))
    sas: list = []
    for candidate in (name if by_sa else None, eff_name if eff_sa else None):
        sa = service_account(candidate)
        if sa and sa not in sas:
            sas.append(sa)
    if not sas:
        return out
    if t_ms is None:
        t_ms = epoch_ms(doc["@timestamp"])
    # A pod-bound token names its pod; the pod runs as the token's SA (the SA in `user.name`).
    sa_user = service_account(name)
    extra = (audit.get("user") or {}).get("extra") if sa_user else None
    if isinstance(extra, dict):
        claim = extra.get(POD_CLAIM)
        pod = claim[0] if isinstance(claim, list) and claim else claim
        if isinstance(pod, str) and pod and not failed:
            out.append(("F", sa_user.split(":")[2], pod, "pod_claim", sa_user, t_ms))
    # Both stages of one request are the same action: only count the request once (not RequestReceived).
    if audit.get("stage") == "RequestReceived":
        return out
    subresource = res.get("subresource")
    hunts = tuple((doc.get("kubehunt") or {}).get("hunts") or ())
    verb = audit.get("verb") or event.get("action")
    # A denied request is still an action worth showing, but it did not modify RBAC or read a secret.
    confirming = not failed and confirms(verb, resource, subresource, hunts)
    resource_text = f"{resource}/{subresource}" if subresource else resource
    for sa in sas:
        out.append(("E", sa, t_ms, event["id"], verb, resource_text, hunts, confirming))
    return out


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the DoFns


def iso_ms(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t_ms % 1000:03d}Z"


def _ms(duration) -> int:
    if duration is None:
        return 0
    if isinstance(duration, timedelta):
        return int(round(duration.total_seconds() * 1000))
    return int(round(float(duration) * 1000))  # seconds


def _ts(t_ms: int) -> Timestamp:
    return Timestamp(micros=t_ms * 1000)


def buckets(t_ms: int, window_ms: int, bucket_ms: int) -> range:
    """Buckets overlapping [t, t + window] (both ends inclusive)."""
    return range(t_ms // bucket_ms, (t_ms + window_ms) // bucket_ms + 1)


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


# ---------------------------------------------------------------------------------------------
# Stage 0: route, timestamp, pre-aggregate facts


class RouteCorrelationElementsFn(beam.DoFn):
    """Give each element its event time; key alerts and facts by pod, events by (SA, bucket).

    Pod-name claims ride on every request of a pod's SA, so a hot pod would send one fact per request;
    facts are reduced per bundle to the earliest time per (pod, source, SA) (the only thing the
    resolver keeps) before they are shuffled. Events are batched per bundle and (SA, bucket): the
    join then pays its state and timer costs once per batch, not once per event.
    """

    POD = "pod"
    EVENTS = "events"

    def __init__(self, bucket_ms: int):
        self._bucket_ms = bucket_ms

    def start_bundle(self):
        self._facts: dict = {}
        self._events: dict = {}

    def process(self, element):
        kind = element[0]
        if kind == "E":
            _, sa, t_ms, *rest = element
            key = (sa, t_ms // self._bucket_ms)
            batch = self._events.get(key)
            if batch is None:
                batch = self._events[key] = []
            batch.append((t_ms, *rest))
        elif kind == "A":
            _, ns, pod, t_ms, alert_id, rule = element
            yield beam.pvalue.TaggedOutput(self.POD, TimestampedValue(((ns, pod), ("A", alert_id, t_ms, rule)), _ts(t_ms)))
        elif kind == "F":
            _, ns, pod, source, sa, t_ms = element
            key = (ns, pod, source, sa)
            seen = self._facts.get(key)
            if seen is None or t_ms < seen:
                self._facts[key] = t_ms
        else:
            raise ValueError(f"unknown correlation element kind {kind!r}")

    def finish_bundle(self):
        for (ns, pod, source, sa), t_ms in self._facts.items():
            yield beam.pvalue.TaggedOutput(self.POD, WindowedValue(
                ((ns, pod), ("F", source, sa, t_ms)), _ts(t_ms), [GlobalWindow()]))
        # Per-element cost is the enemy: a bundle's events for one (SA, bucket) travel as one element.
        for key, batch in self._events.items():
            yield beam.pvalue.TaggedOutput(self.EVENTS, WindowedValue(
                (key, ("E", batch)), _ts(min(e[0] for e in batch)), [GlobalWindow()]))
        self._facts = {}
        self._events = {}


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
        out.append((ns, name, f"{SA_PREFIX}{ns}:{_pod_service_account(pod)}"))
    return out


class ReadPodInventoryFn(beam.DoFn):
    """`kubectl get pods -A -o json` -> timeless inventory facts keyed by pod."""

    def process(self, path: str):
        for ns, name, sa in inventory_service_accounts(path):
            yield TimestampedValue(((ns, name), ("F", "inventory", sa, _TIMELESS)), MIN_TIMESTAMP)


# ---------------------------------------------------------------------------------------------
# Stage 1: pod -> service account


class ResolvePodFn(beam.DoFn):
    """Keyed by (ns, pod): decide each alert's SA; re-decide when a later-arriving fact changes it.

    Outputs (main) alert copies keyed by (SA, bucket) for the join, once per (alert, SA);
    ``RESOLUTIONS`` every decision (alert id -> revision, SA, source, alert fields);
    ``UNRESOLVED`` one marker per alert never resolved once the watermark passes t + window + lateness.
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
        if value[0] == "F":
            _, source, sa, t_ms = value
            known = facts.get((source, sa))
            if known is not None and known <= t_ms:
                return
            facts[(source, sa)] = t_ms
            facts_state.write(facts)
            todo = list(alerts)
        else:
            _, alert_id, t_ms, rule = value
            if alert_id in alerts:
                # the same alert shipped twice
                return
            alerts[alert_id] = {"t": t_ms, "rule": rule, "rev": 0, "current": None, "sent": []}
            deadline = t_ms + self._window_ms + self._lateness_ms + 1
            if deadline > (gc_at.read() or -(2 ** 63)):
                gc_at.write(deadline)
                gc.set(_ts(deadline))
            todo = [alert_id]
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
            yield beam.pvalue.TaggedOutput(self.RESOLUTIONS, (alert_id, (
                "R", alert["rev"], sa, source, rank, ns, pod, alert["t"], alert["rule"])))
            if sa not in alert["sent"]:
                alert["sent"].append(sa)
                for bucket in buckets(alert["t"], self._window_ms, self._bucket_ms):
                    yield ((sa, bucket), ("A", alert_id, alert["t"]))
        if changed or value[0] == "A":
            alerts_state.write(alerts)

    @on_timer(GC)
    def expire(self, alerts_state=beam.DoFn.StateParam(ALERTS), gc_at=beam.DoFn.StateParam(GC_AT)):
        # The pod's facts stay (a few bytes per pod); its alerts are past every possible late input.
        for alert_id, alert in (alerts_state.read() or {}).items():
            if alert["current"] is None:
                yield beam.pvalue.TaggedOutput(UNRESOLVED, alert_id)
        alerts_state.clear()
        gc_at.clear()


# ---------------------------------------------------------------------------------------------
# Stage 2: the interval join


class JoinWindowFn(beam.DoFn):
    """Keyed by (SA, bucket): emit (alert id, pair) for every alert/event with t <= time <= t + window.

    Symmetric: the second of the two to arrive emits the pair, so each pair is emitted exactly once.
    """

    EVENTS = BagStateSpec("events", PickleCoder())
    ALERTS = BagStateSpec("alerts", PickleCoder())
    GC = TimerSpec("gc", TimeDomain.WATERMARK)

    def __init__(self, window_ms: int, lateness_ms: int, bucket_ms: int):
        self._window_ms, self._lateness_ms, self._bucket_ms = window_ms, lateness_ms, bucket_ms

    def process(self, element, events=beam.DoFn.StateParam(EVENTS), alerts=beam.DoFn.StateParam(ALERTS),
                gc=beam.DoFn.TimerParam(GC)):
        (sa, bucket), value = element
        window = self._window_ms
        if value[0] == "E":
            batch = value[1]
            events.add(batch)
            for alert_id, a_ms in alerts.read():
                hits = [e for e in batch if a_ms <= e[0] <= a_ms + window]
                if hits:
                    yield alert_id, ("P", sa, hits)
        else:
            _, alert_id, a_ms = value
            for known_id, _ in alerts.read():
                if known_id == alert_id:
                    return
            alerts.add((alert_id, a_ms))
            hits = [e for batch in events.read() for e in batch if a_ms <= e[0] <= a_ms + window]
            if hits:
                yield alert_id, ("P", sa, hits)
        # Nothing that can still join this bucket arrives after its end + window + lateness.
        gc.set(_ts((bucket + 1) * self._bucket_ms + window + self._lateness_ms))

    @on_timer(GC)
    def expire(self, events=beam.DoFn.StateParam(EVENTS), alerts=beam.DoFn.StateParam(ALERTS)):
        events.clear()
        alerts.clear()


# ---------------------------------------------------------------------------------------------
# Stage 3: incident documents


def build_incident(alert_id: str, resolution: tuple, pairs: Iterable[tuple], version: int) -> dict | None:
    """The incident document of an alert from its resolution and its pairs (of any SA; others ignored).

    A pair is ``("P", sa, [(t_ms, event_id, verb, resource, hunts, confirms), ...])``.
    """
    _, _, sa, source, _, ns, pod, a_ms, rule = resolution
    by_id: dict = {}
    for pair in pairs:
        if pair[1] == sa:
            for event in pair[2]:
                by_id[event[1]] = event
    if not by_id:
        return None
    chosen = sorted(by_id.values(), key=lambda e: (e[0], e[1]))
    hunts = sorted({h for e in chosen for h in e[4]})
    confirmed = any(e[5] for e in chosen)
    return {
        "@timestamp": iso_ms(a_ms),
        "event": {
            "kind": "alert", "id": f"incident-{alert_id}", "dataset": INCIDENT_DATASET,
            "category": ["intrusion_detection"], "type": ["indicator"],
            "severity": SEVERITY_CONFIRMED if confirmed else SEVERITY_CANDIDATE,
            "start": iso_ms(a_ms), "end": iso_ms(chosen[-1][0]),
        },
        "rule": {"name": rule} if rule else {},
        "user": {"name": sa},
        "orchestrator": {"namespace": ns, "resource": {"type": "pod", "name": pod}},
        "kubehunt": {"incident": {
            "service_account": sa, "sa_source": source, "pod": pod, "namespace": ns,
            "alert": alert_id, "alert_rule": rule, "alert_time": iso_ms(a_ms),
            "first_action_time": iso_ms(chosen[0][0]), "last_action_time": iso_ms(chosen[-1][0]),
            "audit_event_ids": sorted(by_id),
            "actions": [{"@timestamp": iso_ms(e[0]), "event_id": e[1], "verb": e[2], "resource": e[3]}
                        for e in chosen],
            "action_count": len(chosen),
            "hunts": hunts, "confirmed": confirmed, "version": version,
        }},
    }


def base_version(action_count: int, rank: int) -> int:
    """Grows with the joined actions, then with a better SA source: re-runs over more data win."""
    return action_count * 4 + rank


class AssembleIncidentFn(beam.DoFn):
    """Keyed by alert id: resolutions + pairs -> incident documents, as ``(final, doc)``.

    Batch: one final document when the watermark passes t + window + lateness. Streaming (``early``):
    also a version as soon as the first action joins, then on every doubling of the action count, on
    confirmation and on an SA change; versions only move forward.
    """

    RESOLUTION = ReadModifyWriteStateSpec("resolution", PickleCoder())
    PAIRS = BagStateSpec("pairs", PickleCoder())
    PROGRESS = ReadModifyWriteStateSpec("progress", PickleCoder())
    FINAL = TimerSpec("final", TimeDomain.WATERMARK)

    def __init__(self, window_ms: int, lateness_ms: int, early: bool):
        self._window_ms, self._lateness_ms, self._early = window_ms, lateness_ms, early

    def process(self, element, resolution_state=beam.DoFn.StateParam(RESOLUTION),
                pairs=beam.DoFn.StateParam(PAIRS), progress_state=beam.DoFn.StateParam(PROGRESS),
                final=beam.DoFn.TimerParam(FINAL)):
        alert_id, value = element
        before = 0
        resolution = resolution_state.read()
        progress = progress_state.read() or {"counts": {}, "confirmed": {}, "emitted": None}
        if value[0] == "R":
            if resolution is not None and resolution[1] >= value[1]:
                # an older decision overtaken in flight
                return
            resolution = value
            resolution_state.write(resolution)
            final.set(_ts(value[7] + self._window_ms + self._lateness_ms + 1))
        else:
            pairs.add(value)
            sa = value[1]
            before = progress["counts"].get(sa, 0)
            progress["counts"][sa] = before + len(value[2])
            if any(e[5] for e in value[2]):
                progress["confirmed"][sa] = True
        if self._early and resolution is not None:
            sa = resolution[2]
            count = progress["counts"].get(sa, 0)
            emitted = progress["emitted"]
            due = count > 0 and (
                emitted is None
                or (sa, resolution[3]) != (emitted["sa"], emitted["source"])
                or (progress["confirmed"].get(sa) and not emitted["confirmed"])
                # every doubling: the bytes of all early versions stay linear in the actions
                or (value[0] == "P" and value[1] == sa and count.bit_length() > before.bit_length()))
            if due:
                doc = self._emit(alert_id, resolution, pairs.read(), progress)
                if doc is not None:
                    yield False, doc
        progress_state.write(progress)

    def _emit(self, alert_id, resolution, pairs, progress, final: bool = False):
        emitted = progress["emitted"]
        doc = build_incident(alert_id, resolution, pairs, 0)
        if doc is None:
            return None
        inc = doc["kubehunt"]["incident"]
        state = {"sa": resolution[2], "source": resolution[3], "confirmed": inc["confirmed"],
                 "count": inc["action_count"]}
        version = base_version(inc["action_count"], resolution[4])
        if emitted is not None:
            same = all(emitted[k] == state[k] for k in state)
            if same and not final:
                return None
            # Never go back (e.g. after an SA change); the identical final content keeps its version.
            version = emitted["version"] if same else max(version, emitted["version"] + 1)
        inc["version"] = version
        progress["emitted"] = {**state, "version": version}
        return doc

    @on_timer(FINAL)
    def finish(self, alert_id=beam.DoFn.KeyParam, resolution_state=beam.DoFn.StateParam(RESOLUTION),
               pairs=beam.DoFn.StateParam(PAIRS), progress_state=beam.DoFn.StateParam(PROGRESS)):
        resolution = resolution_state.read()
        if resolution is not None:
            progress = progress_state.read() or {"counts": {}, "confirmed": {}, "emitted": None}
            doc = self._emit(alert_id, resolution, pairs.read(), progress, final=True)
            if doc is not None:
                yield True, doc
        resolution_state.clear()
        pairs.clear()
        progress_state.clear()


class CountIncidentsFn(beam.DoFn):
    """Counters for the run summary, counted here (not in timers: lost on some runners); yields docs."""

    def setup(self):
        self._total = Metrics.counter(METRICS_NAMESPACE, "incidents.total")
        self._confirmed = Metrics.counter(METRICS_NAMESPACE, "incidents.confirmed")
        self._sources = {s: Metrics.counter(METRICS_NAMESPACE, f"incidents.sa_source.{s}") for s in SA_SOURCES}

    def process(self, element):
        final, doc = element
        if final:
            inc = doc["kubehunt"]["incident"]
            self._total.inc()
            if inc["confirmed"]:
                self._confirmed.inc()
            self._sources[inc["sa_source"]].inc()
        yield doc


class CountUnresolvedFn(beam.DoFn):
    def setup(self):
        self._unresolved = Metrics.counter(METRICS_NAMESPACE, "alerts.unresolved")

    def process(self, alert_id):
        self._unresolved.inc()
        return []


class CorrelateByServiceAccount(beam.PTransform):
    """Correlation elements (from ``extract``) -> incident documents (dicts); see the module docstring.

    ``window``/``allowed_lateness``: timedelta (or seconds). ``bucket``: join bucket size (default:
    the window), bounds the join's state per key to one bucket's events. ``early_updates``: publish
    partial incidents before the window closes (default: when the pipeline is streaming); without
    them only final versions are emitted, one per incident, which is what the file sink wants.
    """

    def __init__(self, window=timedelta(minutes=30), allowed_lateness=None, assume_default_sa: bool = False,
                 pods_file: str | None = None, bucket=None, early_updates: bool | None = None):
        super().__init__()
        self._window_ms = _ms(window)
        if self._window_ms <= 0:
            raise ValueError("the correlation window must be positive")
        self._lateness_ms = _ms(allowed_lateness)
        self._bucket_ms = _ms(bucket) if bucket is not None else self._window_ms
        self._assume_default = assume_default_sa
        self._pods_file = pods_file
        self._early = early_updates

    def expand(self, elements):
        early = self._early
        if early is None:
            early = bool(elements.pipeline.options.view_as(StandardOptions).streaming)
        routed = elements | "RouteCorrelationElements" >> beam.ParDo(
            RouteCorrelationElementsFn(self._bucket_ms)).with_outputs(
                RouteCorrelationElementsFn.POD, RouteCorrelationElementsFn.EVENTS)
        pod_inputs = [routed[RouteCorrelationElementsFn.POD]]
        if self._pods_file:
            pod_inputs.append(elements.pipeline
                              | "PodInventoryPath" >> beam.Create([self._pods_file])
                              | "ReadPodInventory" >> beam.ParDo(ReadPodInventoryFn()))
        # Typed keys give the stateful DoFns a deterministic key coder (str/int tuples), which
        # runners that group by encoded key bytes need.
        by_pod = tuple(pod_inputs) | "FlattenPodFacts" >> beam.Flatten().with_output_types(
            typing.Tuple[typing.Tuple[str, str], typing.Any])
        resolved = by_pod | "ResolvePodServiceAccount" >> beam.ParDo(ResolvePodFn(
            self._window_ms, self._lateness_ms, self._bucket_ms, self._assume_default)).with_outputs(
                ResolvePodFn.RESOLUTIONS, UNRESOLVED, main="alert_copies")
        resolved[UNRESOLVED] | "CountUnresolvedAlerts" >> beam.ParDo(CountUnresolvedFn())
        pairs = ((resolved.alert_copies, routed[RouteCorrelationElementsFn.EVENTS])
                 | "FlattenJoinInputs" >> beam.Flatten().with_output_types(
                     typing.Tuple[typing.Tuple[str, int], typing.Any])
                 | "JoinWithinWindow" >> beam.ParDo(JoinWindowFn(self._window_ms, self._lateness_ms, self._bucket_ms)))
        return ((resolved[ResolvePodFn.RESOLUTIONS], pairs)
                | "FlattenIncidentInputs" >> beam.Flatten().with_output_types(typing.Tuple[str, typing.Any])
                | "AssembleIncidents" >> beam.ParDo(AssembleIncidentFn(self._window_ms, self._lateness_ms, early))
                | "CountIncidents" >> beam.ParDo(CountIncidentsFn()))
