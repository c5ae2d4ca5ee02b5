"""Seeded generator of realistic Kubernetes audit events (and Falco alerts) with hunt edge cases.

The mix is dominated by what a real API server logs (controllers and kubelets watching, leases renewed,
configmaps read), with the events the hunts care about sprinkled in, and every edge case the playbook's
jq filters get wrong or nearly wrong. Each generated event carries a *label* naming the case it was made
for (``None`` for background); the parity test uses the labels as its oracle of intended differences:

  impersonated-secret-read   alice reads secrets *as* a service account (impersonatedUser)
  lookalike-exclusion        system:serviceaccount:default:vaultwarden (contains "vault") reads secrets
  group-lookalike-user       user system:serviceaccounts:NS:NAME (a group name) reads secrets
  excluded-consumer          cert-manager / vault / external-secrets read secrets
  sa-secret-read             an unexpected service account reads secrets (the hunt's true positive)
  privileged-2nd-container   only the 2nd container is privileged
  multi-match-pod            two containers privileged, or host namespaces with 2+ containers
  privileged-init-container  only an init container is privileged
  generatename-pod           privileged pod created through metadata.generateName (no objectRef.name)
  host-namespace-pod         hostPID / hostNetwork / hostIPC
  exec-create                classic SPDY exec (verb create)
  websocket-exec             kubectl >= 1.30 exec (verb get on pods/exec)
  rbac-change                create/update/patch/delete on cluster roles and (cluster)role bindings
  rbac-deletecollection      deletecollection of role bindings
  namespaced-role            create/patch/delete of namespaced roles
  ssar-rbac-word             `kubectl auth can-i create rolebindings` (word in the body only)
  ssar-exec-word             `kubectl auth can-i create pods/exec` (word in the body only)
  v1beta1-legacy             audit.k8s.io/v1beta1 with only the legacy `timestamp` (+ a label above, joined by '+')

Every event has a unique requestReceivedTimestamp (or, for legacy v1beta1 events, a unique name/account),
so the playbook's projections identify events. Tests and the benchmarks import it; `scripts/gen_corpus.py`
writes a corpus to files.
"""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import orjson

NAMESPACES = ["shop", "payments", "ci", "monitoring", "default", "kube-system", "data", "web"]
NODES = [f"node-{i}" for i in range(1, 7)]
CONTROLLERS = ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"]
BACKGROUND_RESOURCES = ["configmaps", "endpoints", "services", "leases", "nodes", "pods", "events",
                        "deployments", "replicasets", "namespaces", "endpointslices", "serviceaccounts"]
HUMANS = ["alice", "bob", "carol", "dave@example.com", "oidc:erin"]


class Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.t = datetime(2026, 1, 15, 12, 0, 0, tzinfo=timezone.utc)
        self.n = 0

    # -- primitives ----------------------------------------------------------------------------
    def tick(self) -> str:
        self.t += timedelta(microseconds=self.rng.randint(1, 4000))
        return self.t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ip(self) -> str:
        return f"10.{self.rng.randint(0, 3)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"

    def sa(self, ns: str | None = None, name: str | None = None) -> dict:
        ns = ns or self.rng.choice(NAMESPACES)
        name = name or self.rng.choice(["default", "web", "api", "worker", "builder", "scraper", "job-runner"])
        return {"username": f"system:serviceaccount:{ns}:{name}", "uid": self.uid(),
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]}

    def human(self) -> dict:
        return {"username": self.rng.choice(HUMANS), "groups": ["devs", "system:authenticated"]}

    def event(self, verb: str, ref: dict, user: dict, *, code: int = 200, level: str = "Metadata",
              uri: str | None = None, request: dict | None = None, response: dict | None = None,
              impersonated: dict | None = None, stage: str = "ResponseComplete", legacy: bool = False) -> dict:
        self.n += 1
        ts = self.tick()
        res = ref.get("resource", "")
        ns = ref.get("namespace")
        path = f"/api/v1/namespaces/{ns}/{res}" if ns else f"/api/v1/{res}"
        if ref.get("name"):
            path += f"/{ref['name']}"
        if ref.get("subresource"):
            path += f"/{ref['subresource']}"
        ev = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1beta1" if legacy else "audit.k8s.io/v1",
            "level": level,
            "auditID": self.uid(),
            "stage": stage,
            "requestURI": uri or path,
            "verb": verb,
            "user": user,
            "sourceIPs": [self.ip()],
            "userAgent": self.rng.choice(["kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
                                          "kube-controller-manager/v1.29.4", "kubelet/v1.29.4 (linux/amd64)",
                                          "Go-http-client/2.0", "argocd-application-controller/v2.10"]),
            "objectRef": {"apiVersion": "v1", **ref},
            "responseStatus": {"metadata": {}, "code": code},
            "annotations": {"authorization.k8s.io/decision": "allow" if code != 403 else "forbid",
                            "authorization.k8s.io/reason": ""},
        }
        if impersonated:
            ev["impersonatedUser"] = impersonated
        if legacy:
            ev["timestamp"] = ts[:19] + "Z"
            ev["metadata"] = {"creationTimestamp": ts[:19] + "Z"}
        else:
            ev["requestReceivedTimestamp"] = ts
            ev["stageTimestamp"] = ts
        if request is not None:
            ev["requestObject"] = request
        if response is not None:
            ev["responseObject"] = response
        return ev

    def pod_spec(self, containers: list[dict], **spec) -> dict:
        return {"kind": "Pod", "apiVersion": "v1", "spec": {"containers": containers, **spec}}

    def container(self, privileged=None) -> dict:
        c = {"name": self.rng.choice(["app", "web", "sidecar", "tool"]) + str(self.rng.randint(0, 99)),
             "image": self.rng.choice(["nginx:1.25", "busybox", "alpine:3.19", "ghcr.io/acme/api:4.2"])}
        if privileged is not None:
            c["securityContext"] = {"privileged": privileged}
        elif self.rng.random() < 0.3:
            c["securityContext"] = {"runAsNonRoot": True}
        return c

    # -- background ----------------------------------------------------------------------------
    def background(self) -> dict:
        r = self.rng.random()
        res = self.rng.choice(BACKGROUND_RESOURCES)
        ns = None if res in ("nodes", "namespaces") else self.rng.choice(NAMESPACES)
        if r < 0.35:
            user = {"username": f"system:node:{self.rng.choice(NODES)}", "groups": ["system:nodes", "system:authenticated"]}
        elif r < 0.65:
            user = {"username": self.rng.choice(CONTROLLERS), "groups": ["system:authenticated"]}
        elif r < 0.85:
            user = self.sa()
        else:
            user = self.human()
        verb = self.rng.choice(["get", "list", "watch", "watch", "get", "update", "patch", "create"])
        ref = {"resource": res}
        if ns:
            ref["namespace"] = ns
        if verb in ("get", "update", "patch"):
            ref["name"] = f"{res[:-1]}-{self.rng.randint(0, 500)}"
        code = 403 if self.rng.random() < 0.01 else (201 if verb == "create" else 200)
        request = None
        if verb == "create" and res == "pods":
            # ordinary, unprivileged pods (sometimes with several containers)
            request = self.pod_spec([self.container(False if self.rng.random() < 0.3 else None)
                                     for _ in range(self.rng.randint(1, 3))])
            ref["name"] = f"pod-{self.n}"
        return self.event(verb, ref, user, code=code, request=request,
                          level="RequestResponse" if request else "Metadata")

    # -- hunt-relevant cases ---------------------------------------------------------------------
    def case(self, label: str, legacy: bool = False) -> dict:
        rng, n = self.rng, self.n
        ns = rng.choice(NAMESPACES)
        if label == "sa-secret-read":
            user = self.sa(name=f"job-{n}") if legacy else self.sa()
            ref = {"resource": "secrets", "namespace": ns}
            verb = rng.choice(["get", "list"])
            if verb == "get":
                ref["name"] = f"secret-{rng.randint(0, 40)}"
            return self.event(verb, ref, user, legacy=legacy)
        if label == "impersonated-secret-read":
            return self.event(rng.choice(["get", "list"]), {"resource": "secrets", "namespace": ns},
                              self.human() if not legacy else {"username": f"user-{n}"},
                              impersonated={"username": f"system:serviceaccount:{ns}:{rng.choice(['default', 'web'])}"},
                              legacy=legacy)
        if label == "lookalike-exclusion":
            name = rng.choice(["vaultwarden", "not-vault", "my-cert-manager-copy", "external-secretsx"])
            nspace = rng.choice(["default", "attacker", "vault-ish"])
            return self.event("list", {"resource": "secrets", "namespace": ns},
                              {"username": f"system:serviceaccount:{nspace}:{name}" + (f"-{n}" if legacy else "")},
                              legacy=legacy)
        if label == "group-lookalike-user":
            return self.event("list", {"resource": "secrets", "namespace": ns},
                              {"username": f"system:serviceaccounts:{ns}:default" + (f"-{n}" if legacy else "")},
                              legacy=legacy)
        if label == "excluded-consumer":
            user = rng.choice(["system:serviceaccount:cert-manager:cert-manager",
                               "system:serviceaccount:vault:vault-agent-injector",
                               "system:serviceaccount:external-secrets:external-secrets"])
            return self.event(rng.choice(["get", "list"]), {"resource": "secrets", "namespace": ns},
                              {"username": user}, legacy=legacy)
        if label in ("privileged-2nd-container", "multi-match-pod", "privileged-init-container",
                     "generatename-pod", "host-namespace-pod"):
            name = f"pod-{n}"
            spec: dict = {}
            if label == "privileged-2nd-container":
                containers = [self.container(False), self.container(True)]
            elif label == "multi-match-pod":
                if rng.random() < 0.5:
                    containers = [self.container(True), self.container(True)]
                else:
                    containers = [self.container(), self.container()]
                    spec[rng.choice(["hostPID", "hostNetwork", "hostIPC"])] = True
            elif label == "privileged-init-container":
                containers = [self.container()]
                spec["initContainers"] = [self.container(True)]
            elif label == "generatename-pod":
                containers = [self.container(True)]
            else:
                containers = [self.container()]
                spec[rng.choice(["hostPID", "hostNetwork", "hostIPC"])] = True
            request = self.pod_spec(containers, **spec)
            ref = {"resource": "pods", "namespace": ns}
            response = None
            if label == "generatename-pod":
                request["metadata"] = {"generateName": "debug-"}
                response = {"kind": "Pod", "metadata": {"name": f"debug-{n:05x}", "namespace": ns}}
            else:
                ref["name"] = name
                request["metadata"] = {"name": name}
            user = self.sa() if rng.random() < 0.5 else self.human()
            return self.event("create", ref, user, code=201, level="RequestResponse", request=request,
                              response=response, legacy=legacy)
        if label in ("exec-create", "websocket-exec"):
            name = f"web-{n}"
            uri = f"/api/v1/namespaces/{ns}/pods/{name}/exec?command=sh&container=app&stdin=true&tty=true"
            user = self.human() if rng.random() < 0.7 else self.sa()
            impersonated = {"username": "system:serviceaccount:ci:builder"} if rng.random() < 0.1 else None
            return self.event("create" if label == "exec-create" else "get",
                              {"resource": "pods", "namespace": ns, "name": name, "subresource": "exec"},
                              user, code=101, uri=uri, stage="ResponseStarted", impersonated=impersonated,
                              legacy=legacy)
        if label in ("rbac-change", "rbac-deletecollection", "namespaced-role"):
            if label == "rbac-change":
                res = rng.choice(["clusterroles", "clusterrolebindings", "rolebindings"])
                verb = rng.choice(["create", "update", "patch", "delete"])
            elif label == "rbac-deletecollection":
                res, verb = rng.choice(["rolebindings", "clusterrolebindings"]), "deletecollection"
            else:
                res, verb = "roles", rng.choice(["create", "update", "patch", "delete"])
            ref = {"resource": res, "apiGroup": "rbac.authorization.k8s.io"}
            if res in ("roles", "rolebindings"):
                ref["namespace"] = ns
            if verb != "deletecollection":
                ref["name"] = f"{res[:-1]}-{n}"
            request = None
            if verb in ("create", "update") and res in ("clusterrolebindings", "rolebindings"):
                request = {"kind": "RoleBinding", "roleRef": {"kind": "ClusterRole",
                                                              "name": rng.choice(["cluster-admin", "view", "edit"])},
                           "subjects": [{"kind": "User", "name": rng.choice(HUMANS)}]}
            elif verb in ("create", "update"):
                request = {"kind": "Role", "rules": [{"apiGroups": [""], "resources": [rng.choice(["pods", "*"])],
                                                      "verbs": [rng.choice(["get", "*"])]}]}
            user = self.human() if rng.random() < 0.6 else self.sa()
            return self.event(verb, ref, user, code=201 if verb == "create" else 200, request=request,
                              level="RequestResponse" if request else "Metadata", legacy=legacy)
        if label in ("ssar-rbac-word", "ssar-exec-word"):
            attrs = ({"verb": "create", "resource": "rolebindings", "group": "rbac.authorization.k8s.io",
                      "namespace": ns} if label == "ssar-rbac-word"
                     else {"verb": "create", "resource": "pods", "subresource": "exec", "namespace": ns})
            return self.event("create", {"resource": "selfsubjectaccessreviews", "apiGroup": "authorization.k8s.io"},
                              self.human(), code=201, level="Request",
                              request={"kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attrs}},
                              uri="/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", legacy=legacy)
        raise ValueError(f"unknown case {label}")


CASE_WEIGHTS = {
    "sa-secret-read": 60, "impersonated-secret-read": 12, "lookalike-exclusion": 12, "group-lookalike-user": 8,
    "excluded-consumer": 30, "privileged-2nd-container": 8, "multi-match-pod": 8, "privileged-init-container": 6,
    "generatename-pod": 8, "host-namespace-pod": 10, "exec-create": 20, "websocket-exec": 20, "rbac-change": 30,
    "rbac-deletecollection": 6, "namespaced-role": 15, "ssar-rbac-word": 6, "ssar-exec-word": 6,
}


NO_LEGACY = {"ssar-rbac-word", "ssar-exec-word", "rbac-deletecollection", "excluded-consumer"}


def generate(events: int = 10_000, seed: int = 7, case_share: float = 0.08) -> list[tuple[dict, str | None]]:
    """`events` audit events with their labels (None = background). Deterministic for a seed."""
    gen = Gen(seed)
    labels = list(CASE_WEIGHTS)
    weights = [CASE_WEIGHTS[k] for k in labels]
    out: list[tuple[dict, str | None]] = []
    for _ in range(events):
        if gen.rng.random() < case_share:
            label = gen.rng.choices(labels, weights)[0]
            # Legacy events have no requestReceivedTimestamp; only cases whose projection stays unique get them.
            legacy = label not in NO_LEGACY and gen.rng.random() < 0.1
            out.append((gen.case(label, legacy), f"{label}+v1beta1-legacy" if legacy else label))
        else:
            out.append((gen.background(), None))
    return out


FALCO_RULES = [
    ("Terminal shell in container", "Notice", "execve", ["container", "shell", "mitre_execution"]),
    ("Read sensitive file untrusted", "Warning", "openat", ["container", "filesystem", "mitre_credential_access"]),
    ("Fileless execution via memfd in container", "Warning", "memfd_create", ["container", "mitre_defense_evasion"]),
    ("Unexpected ptrace in container", "Warning", "ptrace", ["container", "mitre_credential_access"]),
    ("Write to sensitive path in container", "Error", "openat", ["container", "mitre_persistence"]),
    ("Write below etc", "Error", "openat", ["container", "filesystem", "mitre_persistence"]),
    ("Contact K8S API Server From Container", "Notice", "connect", ["container", "network", "k8s"]),
]


def generate_falco(alerts: int = 1_000, seed: int = 7) -> list[dict]:
    gen = Gen(seed + 1)
    out = []
    for i in range(alerts):
        rule, priority, evt_type, tags = gen.rng.choice(FALCO_RULES)
        ns = gen.rng.choice(NAMESPACES)
        ts = gen.tick()
        proc = gen.rng.choice(["sh", "bash", "python3", "strace", "gdb", "curl", "node"])
        fields = {"evt.time": int(gen.t.timestamp() * 1e9), "evt.type": evt_type, "proc.name": proc,
                  "proc.cmdline": f"{proc} -c x", "proc.pid": gen.rng.randint(2, 60000), "user.name": "root",
                  "container.id": f"{gen.rng.getrandbits(48):012x}", "container.name": f"c-{ns}",
                  "container.image.repository": f"ghcr.io/acme/{ns}", "k8s.ns.name": ns,
                  "k8s.pod.name": f"{ns}-{gen.rng.randint(0, 30)}"}
        if evt_type == "openat":
            fields["fd.name"] = gen.rng.choice(["/etc/shadow", "/etc/passwd", "/etc/resolv.conf", "/root/.ssh/authorized_keys"])
        out.append({"uuid": gen.uid(), "output": f"{ts}: {priority} {rule} (proc={proc})", "priority": priority,
                    "rule": rule, "source": "syscall", "tags": tags, "time": ts, "hostname": gen.rng.choice(NODES),
                    "output_fields": fields})
    return out


def write_corpus(path, events: int = 10_000, seed: int = 7) -> list[str | None]:
    """Write the audit corpus as NDJSON (compact, like an API server's log); return the labels by line."""
    pairs = generate(events, seed)
    with open(path, "wb") as fh:
        for ev, _ in pairs:
            fh.write(orjson.dumps(ev) + b"\n")
    return [label for _, label in pairs]


# -- the benchmark corpus (scripts/bench.py): real-shaped bodies, a hot account, planted chains ----

HOT_NS, HOT_SA_NAME = "data", "crawler"
HOT_SA = f"system:serviceaccount:{HOT_NS}:{HOT_SA_NAME}"


def _object_body(gen: Gen, kind: str, ns: str | None, name: str) -> dict:
    """A response object shaped like the API server's (labels, annotations, managedFields), ~0.8 KB."""
    rng = gen.rng
    meta = {"name": name, "uid": gen.uid(), "resourceVersion": str(rng.randint(10_000, 9_999_999)),
            "creationTimestamp": "2026-01-14T08:00:00Z",
            "labels": {"app.kubernetes.io/name": name.split("-")[0], "app.kubernetes.io/part-of": "shop",
                       "pod-template-hash": f"{rng.getrandbits(32):08x}"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                            "deployment.kubernetes.io/revision": str(rng.randint(1, 40))},
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-01-14T08:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                                            "f:status": {"f:conditions": {}}}}]}
    if ns:
        meta["namespace"] = ns
    return {"kind": kind, "apiVersion": "v1", "metadata": meta,
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def generate_bench(events: int, seed: int = 7, alerts_per_1000: float = 3.0, hot_share: float = 0.2,
                   events_per_s: float = 50.0, burst: int = 25):
    """(audit events, Falco alerts, pod inventory) for the benchmark; deterministic for a seed.

    The hunt-relevant mix of ``generate`` at ``events_per_s`` (a mid-sized cluster: 400k events span
    ~2.2 hours); successful reads carry a response body (events average ~1.1 KB, like a
    RequestResponse-level log); ``hot_share`` of the requests come from one hot service account
    through pod-bound tokens of its pods. Falco alerts (``alerts_per_1000`` per 1,000 events) come in
    bursts of ``burst`` in one pod over two minutes, as a shell or a noisy rule makes them, in pods of
    other namespaces whose account then reads secrets and binds roles (planted chains: a few actions
    after each burst); one more alert is in a hot pod (its incident holds a window of the hot
    account's requests). The inventory lists every alert pod.
    """
    pairs = generate(events, seed)
    gen = Gen(seed + 2)
    rng = gen.rng
    start = datetime(2026, 1, 15, 12, 0, 0, tzinfo=timezone.utc)
    step_us = 1e6 / events_per_s
    hot_pods = [f"{HOT_SA_NAME}-{i}" for i in range(8)]
    audit = []
    for i, (ev, _) in enumerate(pairs):
        ts = (start + timedelta(microseconds=int(i * step_us) + rng.randrange(int(step_us)))).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ")
        if "requestReceivedTimestamp" in ev:
            ev["requestReceivedTimestamp"] = ev["stageTimestamp"] = ts
        if rng.random() < hot_share and "impersonatedUser" not in ev:
            ev["user"] = {"username": HOT_SA, "uid": gen.uid(),
                          "groups": ["system:serviceaccounts", f"system:serviceaccounts:{HOT_NS}", "system:authenticated"],
                          "extra": {"authentication.kubernetes.io/pod-name": [rng.choice(hot_pods)],
                                    "authentication.kubernetes.io/pod-uid": [gen.uid()]}}
        ref = ev.get("objectRef") or {}
        if ev.get("verb") in ("get", "update", "patch") and "responseObject" not in ev \
                and ev["responseStatus"]["code"] < 300 and ref.get("resource") != "secrets":
            ev["level"] = "RequestResponse"
            ev["responseObject"] = _object_body(gen, ref.get("resource", "object").rstrip("s").capitalize(),
                                                ref.get("namespace"), ref.get("name") or "object-0")
        audit.append(ev)
    inventory = [{"metadata": {"namespace": HOT_NS, "name": pod}, "spec": {"serviceAccountName": HOT_SA_NAME}}
                 for pod in hot_pods]
    templates = generate_falco(max(1, int(events * alerts_per_1000 / 1000)), seed)
    falco = []
    bursts = max(1, len(templates) // burst)
    for b in range(bursts):
        at = rng.randrange(max(1, len(audit) - 200))
        t0 = start + timedelta(microseconds=int(at * step_us))
        size = burst
        if b == 0:
            # One alert in a hot pod: its incident holds a whole window of the hot account's requests.
            ns, pod, sa_name, size = HOT_NS, rng.choice(hot_pods), HOT_SA_NAME, 1
        else:
            ns = rng.choice([n for n in NAMESPACES if n != HOT_NS])
            pod, sa_name = f"{ns}-worker-{b}", rng.choice(["web", "api", "worker"])
            inventory.append({"metadata": {"namespace": ns, "name": pod}, "spec": {"serviceAccountName": sa_name}})
            sa = f"system:serviceaccount:{ns}:{sa_name}"
            # The chain: the pod's own token reads secrets and binds a role, within the window.
            for k, (verb, resource) in enumerate([("list", "secrets"), ("get", "secrets"), ("create", "rolebindings"),
                                                  ("get", "pods"), ("list", "configmaps")]):
                ev = audit[at + 100 + 10 * k]
                ev["user"] = {"username": sa, "groups": ["system:serviceaccounts", "system:authenticated"],
                              "extra": {"authentication.kubernetes.io/pod-name": [pod]}}
                ev["verb"] = verb
                ev["objectRef"] = {"apiVersion": "v1", "resource": resource, "namespace": ns}
                ev["responseStatus"] = {"metadata": {}, "code": 201 if verb == "create" else 200}
                ev.pop("requestObject", None)
                ev.pop("responseObject", None)
        for j, alert in enumerate(templates[b * burst:b * burst + size]):
            ts = (t0 + timedelta(seconds=5 * j)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            alert["output_fields"]["k8s.ns.name"], alert["output_fields"]["k8s.pod.name"] = ns, pod
            alert["time"] = ts
            alert["output"] = f"{ts}: {alert['priority']} {alert['rule']}"
            falco.append(alert)
    falco.sort(key=lambda a: a["time"])
    return audit, falco, {"apiVersion": "v1", "kind": "List", "items": inventory}


def write_bench_corpus(folder, events: int, seed: int = 7) -> dict:
    """Write audit.log, falco.json and pods.json for ``generate_bench`` into ``folder``; returns the paths."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    audit, falco, pods = generate_bench(events, seed)
    paths = {"audit": folder / "audit.log", "falco": folder / "falco.json", "pods": folder / "pods.json"}
    with open(paths["audit"], "wb") as fh:
        for ev in audit:
            fh.write(orjson.dumps(ev) + b"\n")
    paths["falco"].write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in falco))
    paths["pods"].write_bytes(orjson.dumps(pods))
    return paths

