"""Seeded escalation-chain scenario with known ground truth (raw audit events, Falco alerts, pod inventory).

The scenario plants each case the correlation must get right and records, for every Falco alert, the
incident it must produce (service account, source of the pod -> SA decision, the exact audit event ids,
confirmed or not) or that it must stay unresolved. Event ids are the pipeline's own deterministic ids
(``transforms.ecs.event_id``), computed from the generated records.

``generate(seed, hot_events) -> Scenario``; ``random_records(seed, ...)`` for oracle tests; ``Builder``
for a test that plants its own events. ``scripts/gen_scenario.py OUT_DIR`` writes a scenario to files.
"""
from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from transforms.ecs import event_id

MINUTE = 60_000
WINDOW_MS = 30 * MINUTE
BASE_MS = int(datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc).timestamp() * 1000)
SA = "system:serviceaccount:"


def iso_us(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{t_ms % 1000:03d}000Z"


@dataclass(frozen=True)
class Expected:
    """The incident an alert must produce."""
    service_account: str
    sa_source: str
    audit_event_ids: tuple[str, ...]
    confirmed: bool


@dataclass
class Scenario:
    audit: list[dict] = field(default_factory=list)
    falco: list[dict] = field(default_factory=list)
    pods: dict = field(default_factory=lambda: {"apiVersion": "v1", "kind": "List", "items": []})
    expected: dict[str, Expected] = field(default_factory=dict)     # alert id -> incident
    unresolved: list[str] = field(default_factory=list)             # alert ids with no SA
    with_default_sa: dict[str, Expected] = field(default_factory=dict)  # extra incidents under --assume-default-sa
    window_ms: int = WINDOW_MS

    def write(self, directory: str | Path) -> dict[str, Path]:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"audit": out / "audit.log", "falco": out / "falco.log", "pods": out / "pods.json",
                 "expected": out / "expected.json"}
        with open(paths["audit"], "w") as handle:
            for record in self.audit:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        with open(paths["falco"], "w") as handle:
            for record in self.falco:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        paths["pods"].write_text(json.dumps(self.pods, indent=1))
        paths["expected"].write_text(json.dumps({
            "expected": {k: {**vars(v), "audit_event_ids": list(v.audit_event_ids)} for k, v in self.expected.items()},
            "unresolved": self.unresolved}, indent=1))
        return paths


class Builder:
    """Appends raw records to a `Scenario`: audit events (returning their pipeline event ids), pod
    creations, Falco alerts and inventory pods; seeded, so the same calls give the same records."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.scenario = Scenario()

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def audit(self, t_ms: int, user: str, verb: str, resource: str, ns: str | None, name: str | None = None, *,
              subresource: str | None = None, stage: str = "ResponseComplete", code: int = 200,
              impersonate: str | None = None, pod_claim: str | None = None, request_object: dict | None = None,
              response_object: dict | None = None, api_group: str = "", audit_id: str | None = None) -> str:
        """Append one audit event; returns its pipeline event id."""
        user_block: dict = {"username": user, "uid": self.uid(),
                            "groups": ["system:serviceaccounts", "system:authenticated"] if user.startswith(SA)
                            else ["system:authenticated"]}
        if pod_claim:
            user_block["extra"] = {"authentication.kubernetes.io/pod-name": [pod_claim],
                                   "authentication.kubernetes.io/pod-uid": [self.uid()]}
        ref = {"resource": resource, "apiVersion": "v1" if not api_group else "v1", "apiGroup": api_group or None}
        ref = {k: v for k, v in ref.items() if v is not None}
        if ns:
            ref["namespace"] = ns
        if name:
            ref["name"] = name
        if subresource:
            ref["subresource"] = subresource
        path = f"/api/v1/namespaces/{ns}/{resource}" + (f"/{name}" if name else "") + (f"/{subresource}" if subresource else "")
        record = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": audit_id or self.uid(), "stage": stage, "requestURI": path, "verb": verb,
            "user": user_block, "sourceIPs": ["10.244.1.7"], "userAgent": "kubectl/v1.29.0",
            "objectRef": ref, "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": iso_us(t_ms), "stageTimestamp": iso_us(t_ms + 3),
            "annotations": {"authorization.k8s.io/decision": "allow" if code < 400 else "forbid"},
        }
        if impersonate:
            record["impersonatedUser"] = {"username": impersonate, "groups": ["system:serviceaccounts"]}
        if request_object is not None:
            record["requestObject"] = request_object
        if response_object is not None:
            record["responseObject"] = response_object
        self.scenario.audit.append(record)
        return event_id("audit", record)

    def pod_create(self, t_ms: int, ns: str, name: str, sa_name: str | None, generate_name: bool = False) -> str:
        spec = {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}
        if sa_name:
            spec["serviceAccountName"] = sa_name
        meta = {"generateName": name[: name.rindex("-") + 1]} if generate_name else {"name": name}
        request = {"kind": "Pod", "apiVersion": "v1", "metadata": {**meta, "namespace": ns}, "spec": spec}
        response = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns, "uid": self.uid()},
                    "spec": {**spec, "serviceAccountName": sa_name or "default"}}
        return self.audit(t_ms, "system:serviceaccount:kube-system:replicaset-controller", "create", "pods", ns,
                          None if generate_name else name, request_object=request, response_object=response)

    def alert(self, t_ms: int, ns: str, pod: str, rule: str = "Terminal shell in container") -> str:
        alert_id = self.uid()
        self.scenario.falco.append({
            "uuid": alert_id, "hostname": "node-1", "priority": "Notice", "rule": rule, "source": "syscall",
            "time": iso_us(t_ms)[:-1] + "000Z",
            "output": f"A shell was spawned in a container (k8s.ns.name={ns} k8s.pod.name={pod})",
            "output_fields": {"k8s.ns.name": ns, "k8s.pod.name": pod, "container.id": self.uid()[:12],
                              "proc.name": "bash", "proc.cmdline": "bash -i", "user.name": "root"},
            "tags": ["container", "shell", "mitre_execution", "T1059"],
        })
        return alert_id

    def inventory_pod(self, ns: str, name: str, sa_name: str) -> None:
        self.scenario.pods["items"].append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": self.uid()},
            "spec": {"serviceAccountName": sa_name, "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"}})


def generate(seed: int = 7, hot_events: int = 100_000) -> Scenario:
    """The ground-truth scenario (see the module docstring); deterministic for a seed."""
    b = Builder(seed)
    s = b.scenario
    T0 = BASE_MS

    # 1. shop/web-7d9f: SA from its pod-create event; the window's edges.
    web = "system:serviceaccount:shop:web"
    b.pod_create(T0 - 60 * MINUTE, "shop", "web-7d9f", "web")
    a1 = b.alert(T0, "shop", "web-7d9f")
    inside = [
        b.audit(T0, web, "get", "configmaps", "shop", "settings"),                       # at t
        b.audit(T0 + 29 * MINUTE, web, "create", "rolebindings", "shop", "pwn",          # 29 min, confirms
                api_group="rbac.authorization.k8s.io"),
        b.audit(T0 + 30 * MINUTE, web, "list", "pods", "shop"),                          # exactly t + 30 min
        b.audit(T0 + 10 * MINUTE, "alice@example.com", "get", "secrets", "shop", "db",   # impersonating the SA
                impersonate=web),
    ]
    # The same request's RequestReceived stage is not a second action.
    b.audit(T0 + 12 * MINUTE, web, "get", "pods", "shop", "web-7d9f", stage="RequestReceived", audit_id="dup-stage-1")
    inside.append(b.audit(T0 + 12 * MINUTE, web, "get", "pods", "shop", "web-7d9f", audit_id="dup-stage-1"))
    b.audit(T0 + 30 * MINUTE + 1, web, "delete", "rolebindings", "shop", "pwn")      # 30 min + 1 ms: out
    b.audit(T0 + 31 * MINUTE, web, "get", "secrets", "shop", "db")                   # 31 min: out
    b.audit(T0 - 1, web, "get", "secrets", "shop", "db")                             # just before: out
    b.audit(T0 - 5 * MINUTE, web, "list", "secrets", "shop")                         # before: out
    b.audit(T0 + 5 * MINUTE, "system:serviceaccount:shop:other", "get", "secrets", "shop", "db")  # other SA: out
    b.audit(T0 + 6 * MINUTE, "system:serviceaccounts:shop:web", "get", "secrets", "shop", "db")   # look-alike: out
    b.audit(T0 + 7 * MINUTE, "shop-web", "get", "secrets", "shop", "db")                          # not an SA: out
    s.expected[a1] = Expected(web, "pod_create", tuple(sorted(inside)), True)

    # 2. batch/worker-x8k2p: generateName pod (name only in the response), no serviceAccountName -> default.
    T1 = T0 + 2 * 60 * MINUTE
    worker = "system:serviceaccount:batch:default"
    b.pod_create(T1 - 3 * MINUTE, "batch", "worker-x8k2p", None, generate_name=True)
    a2 = b.alert(T1, "batch", "worker-x8k2p", rule="Read sensitive file untrusted")
    s.expected[a2] = Expected(worker, "pod_create", tuple(sorted([
        b.audit(T1 + 3 * MINUTE, worker, "get", "secrets", "batch", "registry-creds"),
        b.audit(T1 + 4 * MINUTE, worker, "get", "secrets", "batch", "forbidden", code=403),  # an attempt
    ])), True)

    # 3. payments/api-0: only the pod-name claim on its SA's own requests (after the alert) says who it is.
    T2 = T0 + 3 * 60 * MINUTE
    api = "system:serviceaccount:payments:api"
    a3 = b.alert(T2, "payments", "api-0")
    s.expected[a3] = Expected(api, "pod_claim", tuple(sorted([
        b.audit(T2 + 2 * MINUTE, api, "list", "pods", "payments", pod_claim="api-0"),
        b.audit(T2 + 3 * MINUTE, api, "get", "configmaps", "payments", "flags", pod_claim="api-0"),
    ])), False)

    # 4. ops/legacy-1: only the inventory knows (legacy token: no pod claim).
    T3 = T0 + 4 * 60 * MINUTE
    legacy = "system:serviceaccount:ops:legacy-sa"
    b.inventory_pod("ops", "legacy-1", "legacy-sa")
    b.inventory_pod("ops", "unrelated-0", "other")
    a4 = b.alert(T3, "ops", "legacy-1")
    s.expected[a4] = Expected(legacy, "inventory", tuple(sorted([
        b.audit(T3 + MINUTE, legacy, "get", "configmaps", "ops", "cfg"),
        b.audit(T3 + 2 * MINUTE, legacy, "patch", "clusterroles", None, "edit", api_group="rbac.authorization.k8s.io"),
    ])), True)

    # 5. shop/ghost: no fact at all -> unresolved (an incident under shop:default only with --assume-default-sa).
    T4 = T0 + 5 * 60 * MINUTE
    a5 = b.alert(T4, "shop", "ghost")
    s.unresolved.append(a5)
    shop_default = "system:serviceaccount:shop:default"
    s.with_default_sa[a5] = Expected(shop_default, "assumed_default", (
        b.audit(T4 + MINUTE, shop_default, "list", "services", "shop"),), False)

    # 6. data/crawler-0: a hot SA, `hot_events` requests over 10 hours; one alert in the middle.
    crawler = "system:serviceaccount:data:crawler"
    T5 = T0 + 6 * 60 * MINUTE
    b.pod_create(T5 - 60 * MINUTE, "data", "crawler-0", "crawler")
    span = 10 * 60 * MINUTE
    start = T5 - span // 2
    a6 = b.alert(T5, "data", "crawler-0", rule="Unexpected outbound connection")
    hot_in = []
    for i in range(hot_events):
        t = start + (span * i) // max(hot_events, 1)
        eid = b.audit(t, crawler, "get", "pods", "data", f"p{i % 50}")
        if T5 <= t <= T5 + WINDOW_MS:
            hot_in.append(eid)
    hot_in.append(b.audit(T5 + 20 * MINUTE + 7, crawler, "list", "secrets", "data"))
    s.expected[a6] = Expected(crawler, "pod_create", tuple(sorted(hot_in)), True)

    # 7. An alert in a resolved pod whose SA does nothing in the window: no incident. Host alert: ignored.
    b.pod_create(T0 - 10 * MINUTE, "shop", "idle-1", "idle")
    b.alert(T0 + MINUTE, "shop", "idle-1")
    b.audit(T0 + 40 * MINUTE, "system:serviceaccount:shop:idle", "get", "secrets", "shop", "db")
    s.falco.append({"uuid": b.uid(), "hostname": "node-2", "priority": "Warning", "rule": "Host shell",
                    "time": iso_us(T0)[:-1] + "000Z", "output": "host", "output_fields": {"proc.name": "sh"}})

    # Noise: human users, controllers.
    for _ in range(200):
        t = T0 + b.rng.randrange(8 * 60 * MINUTE)
        b.audit(t, b.rng.choice(["alice@example.com", "bob@example.com", "system:kube-scheduler"]),
                b.rng.choice(["get", "list", "watch"]), b.rng.choice(["pods", "nodes", "secrets"]), "default")
    return s


def random_records(seed: int, pods: int = 6, alerts: int = 25, events: int = 1500, hours: int = 4,
                   window_ms: int = WINDOW_MS):
    """Random audit events and alerts over a few pods/SAs (one SA per pod, resolved by random sources).

    Returns (audit records, falco records, inventory) for brute-force oracle comparisons.
    """
    b = Builder(seed)
    rng = b.rng
    span = hours * 60 * MINUTE
    namespaces = ["a", "b"]
    pod_sas = []
    for i in range(pods):
        ns = namespaces[i % 2]
        sa_name = f"sa{i % 3}"
        pod = f"pod-{i}"
        pod_sas.append((ns, pod, f"{SA}{ns}:{sa_name}"))
        how = rng.choice(["create", "claim", "inventory", "none"])
        if how == "create":
            b.pod_create(BASE_MS + rng.randrange(-span // 4, span), ns, pod, sa_name)
        elif how == "inventory":
            b.inventory_pod(ns, pod, sa_name)
        elif how == "claim":
            for _ in range(rng.randrange(1, 4)):
                b.audit(BASE_MS + rng.randrange(span), f"{SA}{ns}:{sa_name}", "get", "configmaps", ns, "c",
                        pod_claim=pod)
    users = sorted({sa for _, _, sa in pod_sas}) + ["alice", f"{SA}a:unrelated"]
    for _ in range(events):
        t = BASE_MS + rng.randrange(span)
        user = rng.choice(users)
        verb, resource = rng.choice([("get", "secrets"), ("list", "pods"), ("create", "rolebindings"),
                                     ("get", "configmaps"), ("watch", "services")])
        impersonate = None
        if user == "alice" and rng.random() < 0.5:
            impersonate = rng.choice(users[:-2])
        b.audit(t, user, verb, resource, "a", "x", impersonate=impersonate)
    planted = []
    for _ in range(alerts):
        ns, pod, sa = rng.choice(pod_sas)
        t = BASE_MS + rng.randrange(span)
        planted.append((t, sa))
        b.alert(t, ns, pod)
    # Exact edges (t, t + window in; t - 1, t + window + 1 out) by the alert's own pod's account.
    for t, sa in rng.sample(planted, min(8, len(planted))):
        for edge in (t, t + window_ms, t + window_ms + 1, t - 1):
            b.audit(edge, sa, "get", "secrets", "a", "edge")
    return b.scenario.audit, b.scenario.falco, b.scenario.pods

