"""The service-account join, incrementally, for `kubehunt follow` (one process, state in a file).

It gives the answer of ``transforms.correlate.CorrelateByServiceAccount`` over the same elements
(from ``correlate.extract``): the same pod -> SA rule (``correlate.decide``), the same window
(t <= action time <= t + window, inclusive) and the same incident documents
(``correlate.build_incident``). What differs is when: after each interval, every alert whose inputs
changed is rebuilt and, if its content changed, re-emitted with a higher version (versions only move
forward; the Elasticsearch sink writes incidents with external versions).

Memory is bounded by time, not uptime. The watermark is the newest event time of the slowest source
still being written (a source idle for a few intervals does not hold it back); alerts are dropped
once t + window + lateness is behind it, actions once they can join no alert still to come
(time < watermark - window - lateness), and pod -> SA facts once they were last seen more than
``fact_retention`` (default window + lateness) ago and no live alert of their pod needs them. So an
input later than ``lateness`` behind the watermark may miss a join the batch run makes; and a pod
created longer than ``fact_retention`` before its alert is resolved from newer facts (token pod
claims, ``--pods``) only. The whole state is plain data, pickled into the state file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from transforms.correlate import (Action, AlertSeen, Pair, PodFact, Resolution, base_version, build_incident,
                                  decide)

# `--pods` facts carry no time: like the batch join's inventory facts they count as "long before
# the alert" and lose every time tie-break.
TIMELESS = -(2 ** 62)


@dataclass
class JoinState:
    watermark: int = -(2 ** 63)
    alerts: dict = field(default_factory=dict)     # alert id -> {ns, pod, t, rule, res, sig, version}
    actions: dict = field(default_factory=dict)    # sa -> {event id: (t, id, verb, resource, hunts, confirms)}
    facts: dict = field(default_factory=dict)      # (ns, pod) -> {(source, sa): [earliest, last seen]}
    unresolved: int = 0                             # alerts expired without an SA
    newest: dict = field(default_factory=dict)      # source -> newest event time seen


class IncrementalJoin:
    def __init__(self, window_ms: int, lateness_ms: int, assume_default: bool = False,
                 inventory: list[tuple[str, str, str]] = (), fact_retention_ms: int | None = None,
                 state: JoinState | None = None, update_every_s: float = 30.0):
        self.window_ms, self.lateness_ms, self.assume_default = window_ms, lateness_ms, assume_default
        self.fact_retention_ms = window_ms + lateness_ms if fact_retention_ms is None else fact_retention_ms
        self.inventory: dict = {}
        for ns, pod, sa in inventory:
            self.inventory.setdefault((ns, pod), {})[("inventory", sa)] = TIMELESS
        self.state = state or JoinState()
        self.update_every_s = update_every_s
        self._dirty: set[str] = set()
        # The watermark moves once per interval (in `advance`), not per element: one interval's inputs
        # from several files arrive in no particular order, and none of them is late for another.
        self._newest = dict(self.state.newest)
        # Derived indexes (rebuilt from the state on load).
        self._by_sa: dict[str, set] = {}
        self._by_pod: dict[tuple, set] = {}
        for alert_id, alert in self.state.alerts.items():
            self._index(alert_id, alert)

    def _index(self, alert_id: str, alert: dict) -> None:
        self._by_pod.setdefault((alert["ns"], alert["pod"]), set()).add(alert_id)
        if alert["res"] is not None:
            self._by_sa.setdefault(alert["res"][0], set()).add(alert_id)

    def add(self, elements) -> None:
        s, w = self.state, self.window_ms
        newest_alert = self._newest.get("falco", -(2 ** 63))
        newest_audit = self._newest.get("audit", -(2 ** 63))
        for element in elements:
            if isinstance(element, AlertSeen):
                ns, pod, t_ms, alert_id, rule = element
                newest_alert = max(newest_alert, t_ms)
                if alert_id in s.alerts or t_ms + w + self.lateness_ms < s.watermark:
                    continue  # the same alert twice, or too late to join anything still held
                alert = s.alerts[alert_id] = {"ns": ns, "pod": pod, "t": t_ms, "rule": rule, "res": None,
                                              "sig": None, "version": None, "emitted_at": 0.0,
                                              "pending": False}
                self._index(alert_id, alert)
                self._dirty.add(alert_id)
            elif isinstance(element, Action):
                sa, t_ms, event_id = element.sa, element.t_ms, element.event_id
                newest_audit = max(newest_audit, t_ms)
                by_id = s.actions.setdefault(sa, {})
                if event_id in by_id:
                    continue
                by_id[event_id] = element
                for alert_id in self._by_sa.get(sa, ()):
                    a_ms = s.alerts[alert_id]["t"]
                    if a_ms <= t_ms <= a_ms + w:
                        self._dirty.add(alert_id)
            elif isinstance(element, PodFact):
                ns, pod, source, sa, t_ms = element
                newest_audit = max(newest_audit, t_ms)
                facts = s.facts.setdefault((ns, pod), {})
                known = facts.get((source, sa))
                if known is None or t_ms < known[0]:
                    facts[(source, sa)] = [t_ms, max(t_ms, known[1]) if known else t_ms]
                    self._dirty.update(self._by_pod.get((ns, pod), ()))
                else:
                    known[1] = max(known[1], t_ms)
            else:
                raise ValueError(f"unknown join input {type(element).__name__}")
        for source, t_ms in (("falco", newest_alert), ("audit", newest_audit)):
            if t_ms > -(2 ** 63):
                self._newest[source] = t_ms

    def _facts(self, ns: str, pod: str) -> dict:
        facts = {key: times[0] for key, times in self.state.facts.get((ns, pod), {}).items()}
        for key, t_ms in self.inventory.get((ns, pod), {}).items():
            facts.setdefault(key, t_ms)
        return facts

    def _resolve(self, alert_id: str, alert: dict):
        best = decide(self._facts(alert["ns"], alert["pod"]), alert["ns"], alert["t"], self.window_ms,
                      self.assume_default)
        if best != alert["res"]:
            if alert["res"] is not None:
                self._by_sa.get(alert["res"][0], set()).discard(alert_id)
            alert["res"] = best
            if best is not None:
                self._by_sa.setdefault(best[0], set()).add(alert_id)
        return best

    def _hits(self, alert: dict) -> list:
        a_ms, w = alert["t"], self.window_ms
        return [e for e in self.state.actions.get(alert["res"][0], {}).values() if a_ms <= e.t_ms <= a_ms + w]

    def _build(self, alert_id: str, alert: dict, hits: list | None = None) -> dict | None:
        if alert["res"] is None:
            return None
        sa, source, rank = alert["res"]
        resolution = Resolution(0, sa, source, rank, alert["ns"], alert["pod"], alert["t"], alert["rule"])
        return build_incident(alert_id, resolution, [Pair(sa, self._hits(alert) if hits is None else hits)], 0)

    def _emit(self, alert: dict, doc: dict, out: list, now: float) -> None:
        inc = doc["kubehunt"]["incident"]
        version = base_version(inc["action_count"], alert["res"][2])
        if alert["version"] is not None:
            version = max(version, alert["version"] + 1)
        inc["version"] = version
        alert["sig"] = (alert["res"][0], alert["res"][1], inc["confirmed"], inc["action_count"])
        alert["version"], alert["emitted_at"], alert["pending"] = version, now, False
        out.append(doc)

    def advance(self, active: set[str] | None = None, now: float = 0.0, flush: bool = False) -> list[dict]:
        """Rebuild the alerts whose inputs changed; -> incident documents to write (new versions).

        ``active``: the sources still being written (None: all). The watermark is the newest time of
        the slowest active source, so a source that is behind in a burst holds it back, while an idle
        one (e.g. Falco, quiet for hours) does not keep the audit events of those hours in memory.

        An incident is written at once when it appears, changes SA or source, is confirmed, or its
        action count doubles (so the bytes of all versions stay linear in its actions); smaller
        changes wait until ``update_every_s`` (wall clock, ``now``) has passed since its last version,
        until it closes, or until ``flush`` (shutdown).
        """
        s = self.state
        out: list[dict] = []
        candidates = set(self._dirty) | {a for a, alert in s.alerts.items() if alert.get("pending")}
        for alert_id in sorted(candidates):
            alert = s.alerts.get(alert_id)
            if alert is None:
                continue
            if alert_id in self._dirty:
                self._resolve(alert_id, alert)
            if alert["res"] is None:
                alert["pending"] = False
                continue
            # The signature is cheap; the document (timestamps formatted per action) only when written.
            hits = self._hits(alert)
            sa, source, _ = alert["res"]
            sig = (sa, source, any(e.confirms for e in hits), len({e.event_id for e in hits}))
            last = alert["sig"]
            if sig == last or not hits:
                alert["pending"] = False
                continue
            significant = (last is None or last[:3] != sig[:3]
                           or sig[3].bit_length() > last[3].bit_length())
            if significant or flush or now - alert.get("emitted_at", 0.0) >= self.update_every_s:
                self._emit(alert, self._build(alert_id, alert, hits), out, now)
            else:
                alert["pending"] = True
        self._dirty.clear()
        s.newest = dict(self._newest)
        held = [t for src, t in s.newest.items() if active is None or src in active]
        if held:
            s.watermark = max(s.watermark, min(held))
        elif s.newest:
            s.watermark = max(s.watermark, max(s.newest.values()))
        self._expire(out, now)
        return out

    def _expire(self, out: list, now: float) -> None:
        s = self.state
        horizon = s.watermark - self.window_ms - self.lateness_ms
        for alert_id in [a for a, alert in s.alerts.items() if alert["t"] < horizon]:
            alert = s.alerts[alert_id]
            if alert.get("pending"):
                # Closing: its last change is written now (the final version).
                self._emit(alert, self._build(alert_id, alert), out, now)
            del s.alerts[alert_id]
            if alert["res"] is None:
                s.unresolved += 1
            else:
                self._by_sa.get(alert["res"][0], set()).discard(alert_id)
            pod_alerts = self._by_pod.get((alert["ns"], alert["pod"]))
            if pod_alerts is not None:
                pod_alerts.discard(alert_id)
                if not pod_alerts:
                    del self._by_pod[(alert["ns"], alert["pod"])]
        for sa in list(s.actions):
            kept = {k: e for k, e in s.actions[sa].items() if e.t_ms >= horizon}
            if kept:
                s.actions[sa] = kept
            else:
                del s.actions[sa]
        fact_horizon = s.watermark - self.fact_retention_ms
        for pod in list(s.facts):
            if pod in self._by_pod:
                continue  # a live alert of this pod may be re-decided: keep what decided it
            kept = {k: v for k, v in s.facts[pod].items() if v[1] >= fact_horizon}
            if kept:
                s.facts[pod] = kept
            else:
                del s.facts[pod]

    def sizes(self) -> dict[str, int]:
        s = self.state
        return {"alerts": len(s.alerts), "actions": sum(len(v) for v in s.actions.values()),
                "pods": len(s.facts)}


__all__ = ["IncrementalJoin", "JoinState", "TIMELESS"]
