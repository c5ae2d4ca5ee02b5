"""ECS documents -> join inputs (``AlertSeen``, ``Action``, ``PodFact``); and what can join at all.

``extract(doc)`` runs in the hot loop, once per event: the common "irrelevant event" path is a few
dict lookups. ``JoinScope`` is the batch pre-filter: built from the alerts (Falco is read first; its
alerts are ~0.3% of the lines), it keeps only the audit inputs that can change an incident, so the
rest never leave the fused per-event stage (the join is a shuffle; the local runner would hold all
of it). The answer is the same as without it, because an alert's service account always lives in
the alert's namespace (every fact names an SA of the pod's own namespace), so:

- an ``Action`` of SA ``system:serviceaccount:NS:NAME`` at t can only join an alert in NS with
  alert time <= t <= alert time + window;
- a ``PodFact`` only matters for a pod that has an alert.

Streaming has no complete alert list: it runs without a scope (every input goes to the join).
"""
from __future__ import annotations

import bisect
from typing import Iterable

import apache_beam as beam

from transforms.correlate.messages import SA_PREFIX, Action, AlertSeen, PodFact
from transforms.ecs import to_epoch_ms

POD_CLAIM = "authentication.kubernetes.io/pod-name"
RBAC_RESOURCES = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings"})
RBAC_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SECRET_VERBS = frozenset({"get", "list"})

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


def service_account(user: object) -> str | None:
    """`system:serviceaccount:NS:NAME` -> itself; anything else (incl. `system:serviceaccounts:...`) -> None."""
    if isinstance(user, str) and user.startswith(SA_PREFIX):
        parts = user.split(":")
        if len(parts) == 4 and parts[2] and parts[3]:
            return user
    return None


_CONFIRMING: frozenset | None = None


def confirming_hunts() -> frozenset[str]:
    """The shipped catalogue's hunts marked ``confirms_incident: true`` (read once per process).

    A run with its own ``--hunts-dir`` passes its catalogue's set to ``extract`` instead."""
    global _CONFIRMING
    if _CONFIRMING is None:
        from transforms.hunts import HuntSettings, load_catalogue
        _CONFIRMING = load_catalogue(HuntSettings()).confirming
    return _CONFIRMING


def confirms(verb: str | None, resource: str | None, subresource: str | None, hunts: Iterable[str],
             confirming: frozenset[str] | None = None) -> bool:
    """An RBAC modification or a secret read: a hunt marked ``confirms_incident`` matched, or (for an
    event no such hunt tagged, e.g. a secret read by an excluded account) by verb and resource."""
    confirming = confirming_hunts() if confirming is None else confirming
    if any(h in confirming for h in hunts):
        return True
    if subresource:
        return False
    return ((resource in RBAC_RESOURCES and verb in RBAC_VERBS)
            or (resource == "secrets" and verb in SECRET_VERBS))


def _failed(audit: dict) -> bool:
    status = audit.get("responseStatus")
    code = status.get("code") if isinstance(status, dict) else None
    return isinstance(code, int) and code >= 400


def pod_service_account(pod: object) -> str:
    """The service account name of a Pod object (`default` when the spec names none)."""
    spec = pod.get("spec") if isinstance(pod, dict) else None
    if isinstance(spec, dict):
        name = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if isinstance(name, str) and name:
            return name
    return "default"


def extract(doc: dict, confirming: frozenset[str] | None = None) -> list:
    """The join inputs of one ECS document (usually none): ``AlertSeen``, ``Action``, ``PodFact``.

    ``confirming``: the ids of the hunts that confirm an incident (default: the shipped catalogue's)."""
    event = doc.get("event")
    dataset = event.get("dataset") if isinstance(event, dict) else None
    if dataset == "kubernetes.audit_logs":
        return _extract_audit(doc, event, confirming)
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
    return [AlertSeen(ns, pod, epoch_ms(doc["@timestamp"]), event["id"],
                      rule.get("name") if isinstance(rule, dict) else None)]


def _extract_audit(doc: dict, event: dict, confirming: frozenset[str] | None) -> list:
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
            sa = f"{SA_PREFIX}{ns}:{pod_service_account(audit.get('requestObject'))}"
            out.append(PodFact(ns, pod, "pod_create", sa, t_ms))
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
            out.append(PodFact(sa_user.split(":")[2], pod, "pod_claim", sa_user, t_ms))
    # Both stages of one request are the same action: only count the request once (not RequestReceived).
    if audit.get("stage") == "RequestReceived":
        return out
    subresource = res.get("subresource")
    hunts = tuple((doc.get("kubehunt") or {}).get("hunts") or ())
    verb = audit.get("verb") or event.get("action")
    # A denied request is still an action worth showing, but it did not modify RBAC or read a secret.
    confirmed = not failed and confirms(verb, resource, subresource, hunts, confirming)
    resource_text = f"{resource}/{subresource}" if subresource else resource
    for sa in sas:
        out.append(Action(sa, t_ms, event["id"], verb, resource_text, hunts, confirmed))
    return out


class JoinScope:
    """What can join, given every alert of a bounded input (see the module docstring)."""

    def __init__(self, alerts: Iterable[AlertSeen], window_ms: int):
        self._window_ms = window_ms
        times: dict[str, list[int]] = {}
        self._pods: set[tuple[str, str]] = set()
        for alert in alerts:
            times.setdefault(alert.ns, []).append(alert.t_ms)
            self._pods.add((alert.ns, alert.pod))
        self._times = {ns: sorted(ts) for ns, ts in times.items()}

    def keep(self, element) -> bool:
        if type(element) is Action:
            times = self._times.get(element.sa.split(":", 3)[2])
            if not times:
                return False
            # The latest alert at or before the action decides: earlier ones end earlier.
            i = bisect.bisect_right(times, element.t_ms) - 1
            return i >= 0 and element.t_ms - times[i] <= self._window_ms
        if type(element) is PodFact:
            return (element.ns, element.pod) in self._pods
        return True


class _ExtractFn(beam.DoFn):
    def __init__(self, window_ms: int | None):
        self._window_ms = window_ms
        self._scope = self._scope_of = None

    def process(self, doc, alerts=None):
        elements = extract(doc)
        if alerts is not None and elements:
            if self._scope_of is not alerts:  # the side input is the same object for a whole bundle
                self._scope, self._scope_of = JoinScope(alerts, self._window_ms), alerts
            elements = [e for e in elements if self._scope.keep(e)]
        yield from elements


class ExtractJoinInputs(beam.PTransform):
    """ECS documents (dicts) -> join inputs; with ``alerts`` (a PCollection of ``AlertSeen``, bounded
    input only), only those that can join. The per-event stage does the same inline, over chunks."""

    def __init__(self, window_ms: int | None = None, alerts=None):
        super().__init__()
        self._window_ms, self._alerts = window_ms, alerts

    def expand(self, docs):
        if self._alerts is None:
            return docs | beam.ParDo(_ExtractFn(None))
        return docs | beam.ParDo(_ExtractFn(self._window_ms), beam.pvalue.AsList(self._alerts))
