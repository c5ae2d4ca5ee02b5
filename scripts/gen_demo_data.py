#!/usr/bin/env python3
"""Write the demo data set that ships with kubehunt (tests/data/demo/): a small, realistic cluster day.

Deterministic (seeded): re-running gives byte-identical files, so the committed copy can be checked
(`--check`). It holds background noise (controllers, kubelets, leader-election leases, humans using
kubectl) and every hunt of DESIGN.md, including one escalation chain:

  10:00  pod shop/web-<hash> created by the replicaset controller (generateName, SA `web`)
  10:15  Falco: "Terminal shell in container" in that pod
  10:21  system:serviceaccount:shop:web lists secrets in shop            (secret read)
  10:24  system:serviceaccount:shop:web creates a clusterrolebinding     (RBAC change) -> confirmed

    python scripts/gen_demo_data.py [--out DIR] [--check]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "data" / "demo"
DAY = datetime(2026, 1, 15, 8, 0, 0, tzinfo=timezone.utc)


class Cluster:
    def __init__(self, seed: int = 20260115):
        self.rng = random.Random(seed)
        self.audit: list[tuple[datetime, dict]] = []
        self.falco: list[tuple[datetime, dict]] = []

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    @staticmethod
    def ts(t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def event(self, t: datetime, user: str, verb: str, resource: str, *, namespace: str | None = None,
              name: str | None = None, subresource: str | None = None, code: int = 200,
              request: dict | None = None, response: dict | None = None, groups: list[str] | None = None,
              extra: dict | None = None, impersonate: str | None = None, uri: str | None = None,
              agent: str = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350", ip: str = "10.0.12.7",
              level: str | None = None) -> dict:
        api_group = {"clusterrolebindings": "rbac.authorization.k8s.io", "rolebindings": "rbac.authorization.k8s.io",
                     "clusterroles": "rbac.authorization.k8s.io", "roles": "rbac.authorization.k8s.io",
                     "leases": "coordination.k8s.io", "deployments": "apps", "replicasets": "apps"}.get(resource, "")
        ref = {"resource": resource, "apiGroup": api_group, "apiVersion": "v1"}
        if namespace:
            ref["namespace"] = namespace
        if name:
            ref["name"] = name
        if subresource:
            ref["subresource"] = subresource
        if uri is None:
            base = f"/apis/{api_group}/v1" if api_group else "/api/v1"
            uri = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{resource}" + (f"/{name}" if name else "") \
                + (f"/{subresource}" if subresource else "")
        user_block = {"username": user, "uid": self.uid(),
                      "groups": groups or (["system:serviceaccounts", f"system:serviceaccounts:{user.split(':')[2]}",
                                            "system:authenticated"] if user.startswith("system:serviceaccount:")
                                           else ["system:authenticated"])}
        if extra:
            user_block["extra"] = extra
        ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1",
              "level": level or ("RequestResponse" if request else "Metadata"), "auditID": self.uid(),
              "stage": "ResponseComplete", "requestURI": uri, "verb": verb, "user": user_block,
              "sourceIPs": [ip], "userAgent": agent, "objectRef": ref,
              "responseStatus": {"metadata": {}, "code": code},
              "requestReceivedTimestamp": self.ts(t),
              "stageTimestamp": self.ts(t + timedelta(milliseconds=self.rng.randint(2, 40))),
              "annotations": {"authorization.k8s.io/decision": "allow" if code != 403 else "forbid",
                              "authorization.k8s.io/reason": ""}}
        if impersonate:
            ev["impersonatedUser"] = {"username": impersonate, "groups": ["system:authenticated"]}
        if request is not None:
            ev["requestObject"] = request
        if response is not None:
            ev["responseObject"] = response
        self.audit.append((t, ev))
        return ev

    def sa_claims(self, pod: str, pod_uid: str) -> dict:
        return {"authentication.kubernetes.io/pod-name": [pod], "authentication.kubernetes.io/pod-uid": [pod_uid],
                "authentication.kubernetes.io/node-name": ["node-2"]}

    def pod_spec(self, sa: str | None, image: str, privileged: bool = False, **host) -> dict:
        container = {"name": image.split("/")[-1].split(":")[0], "image": image,
                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
        if privileged:
            container["securityContext"] = {"privileged": True}
        spec = {"containers": [container], **host}
        if sa:
            spec["serviceAccountName"] = sa
        return spec

    def falco_alert(self, t: datetime, rule: str, priority: str, tags: list[str], fields: dict, output: str) -> dict:
        nanos = int(t.timestamp()) * 10**9 + t.microsecond * 1000 + self.rng.randint(0, 999)
        of = {"evt.time.iso8601": nanos, "container.id": fields.pop("container.id", "3ad7b26ded6d"),
              "container.image.repository": fields.pop("image", "registry.example.com/shop/web"),
              "container.image.tag": "1.8.2", "k8s.ns.name": fields.pop("ns", "shop"),
              "k8s.pod.name": fields.pop("pod"), "user.name": "root", "user.uid": 0, **fields}
        of["container.name"] = of["k8s.pod.name"].rsplit("-", 2)[0]
        alert = {"hostname": "node-2", "output": f"{t.strftime('%H:%M:%S.%f')}000: {priority} {output}",
                 "priority": priority, "rule": rule, "source": "syscall", "tags": tags,
                 "time": t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z", "output_fields": of, "uuid": self.uid()}
        self.falco.append((t, alert))
        return alert

    # -- the day ----------------------------------------------------------------------------------

    def noise(self):
        rng = self.rng
        controllers = ["system:kube-controller-manager", "system:kube-scheduler", "system:node:node-1",
                       "system:node:node-2", "system:serviceaccount:kube-system:coredns"]
        for i in range(260):
            t = DAY + timedelta(seconds=rng.randint(0, 8 * 3600))
            who = rng.choice(controllers)
            kind = rng.random()
            if kind < 0.35:
                self.event(t, who, "update", "leases", namespace="kube-system", name=who.split(":")[-1],
                           agent="kube-controller-manager/v1.30.2", ip="10.0.0.10")
            elif kind < 0.6:
                self.event(t, who, rng.choice(["list", "watch"]), rng.choice(["pods", "endpoints", "services", "nodes"]),
                           agent="kubelet/v1.30.2", ip="10.0.0.11")
            elif kind < 0.8:
                self.event(t, "alice@example.com", "get", rng.choice(["pods", "deployments", "services"]),
                           namespace=rng.choice(["shop", "payments"]), name=f"web-{rng.randint(1, 9)}",
                           groups=["dev", "system:authenticated"])
            else:
                self.event(t, "system:serviceaccount:monitoring:prometheus", "list", rng.choice(["pods", "nodes", "services"]),
                           agent="prometheus/2.51.0", ip="10.0.3.4")
        # Everyday Falco noise from stock rules.
        stock = [("Read sensitive file untrusted", "Warning", ["container", "filesystem", "mitre_credential_access", "T1555"],
                  {"evt.type": "openat", "fd.name": "/etc/shadow", "proc.name": "node"}),
                 ("Contact K8S API Server From Container", "Notice", ["container", "network", "k8s", "mitre_discovery", "T1565"],
                  {"evt.type": "connect", "proc.name": "java", "fd.name": "10.244.1.5:41234->10.96.0.1:443"}),
                 ("Launch Package Management Process in Container", "Error", ["container", "process", "mitre_persistence", "T1505"],
                  {"evt.type": "execve", "proc.name": "apt-get", "proc.cmdline": "apt-get install -y curl"})]
        pods = [("payments", "api-6f7c9-q2w3e"), ("shop", "cart-5b8d4-p9z8y"), ("monitoring", "grafana-7c5d9-k1l2m")]
        for i in range(40):
            t = DAY + timedelta(seconds=rng.randint(0, 8 * 3600))
            rule, priority, tags, fields = stock[rng.randrange(len(stock))]
            ns, pod = pods[rng.randrange(len(pods))]
            self.falco_alert(t, rule, priority, list(tags), {"pod": pod, "ns": ns, **fields}, f"{rule} (pod={pod})")
        # Known secret consumers: must not be hunted.
        for i in range(12):
            t = DAY + timedelta(minutes=20 * i + 3)
            self.event(t, "system:serviceaccount:cert-manager:cert-manager", "get", "secrets", namespace="shop",
                       name="web-tls", agent="cert-manager/v1.14.4", ip="10.0.5.2")
            self.event(t + timedelta(seconds=30), "system:serviceaccount:vault:vault-agent", "list", "secrets",
                       namespace="payments", agent="vault/1.16.1", ip="10.0.5.3")
        # The look-alike: a *group* name, not a service account.
        self.event(DAY + timedelta(hours=3), "system:serviceaccounts:shop:web", "get", "secrets", namespace="shop",
                   name="db-password")
        # Ordinary pod creations.
        for i in range(8):
            t = DAY + timedelta(minutes=37 * i + 5)
            name = f"api-{self.uid()[:10]}-{self.uid()[:5]}"
            self.event(t, "system:serviceaccount:kube-system:replicaset-controller", "create", "pods",
                       namespace="payments", request={"kind": "Pod", "metadata": {"generateName": "api-"},
                                                      "spec": self.pod_spec("api", "registry.example.com/payments/api:3.1")},
                       response={"kind": "Pod", "metadata": {"name": name, "namespace": "payments"}},
                       agent="kube-controller-manager/v1.30.2", ip="10.0.0.10")

    def hunts(self):
        t0 = DAY + timedelta(hours=1)
        # 1. privileged pod creation (privileged container + hostPID), and host networking.
        self.event(t0, "mallory@example.com", "create", "pods", namespace="default", name="debug-node",
                   request={"kind": "Pod", "metadata": {"name": "debug-node"},
                            "spec": self.pod_spec(None, "alpine:3.19", privileged=True, hostPID=True)},
                   ip="203.0.113.50")
        self.event(t0 + timedelta(minutes=3), "system:serviceaccount:kube-system:daemon-set-controller", "create",
                   "pods", namespace="monitoring", name="node-exporter-x7k2p",
                   request={"kind": "Pod", "spec": self.pod_spec("node-exporter", "prom/node-exporter:1.7",
                                                                 hostNetwork=True, hostPID=True)},
                   agent="kube-controller-manager/v1.30.2", ip="10.0.0.10")
        # 2. pod exec: classic create, and kubectl >= 1.30 over websockets (verb get).
        self.event(t0 + timedelta(minutes=10), "alice@example.com", "create", "pods", namespace="payments",
                   name="api-0", subresource="exec", groups=["dev", "system:authenticated"],
                   uri="/api/v1/namespaces/payments/pods/api-0/exec?command=sh&command=-c&command=id&stdin=true&stdout=true")
        self.event(t0 + timedelta(minutes=12), "bob@example.com", "get", "pods", namespace="shop",
                   name="web-1", subresource="exec", groups=["ops", "system:authenticated"],
                   uri="/api/v1/namespaces/shop/pods/web-1/exec?command=%2Fbin%2Fbash&stdin=true&stdout=true&tty=true")
        # 3. RBAC modification, including a namespaced role (the playbook's grep misses `roles`).
        self.event(t0 + timedelta(minutes=20), "alice@example.com", "patch", "roles", namespace="shop",
                   name="deployer", groups=["dev", "system:authenticated"],
                   request={"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]})
        self.event(t0 + timedelta(minutes=22), "admin@example.com", "delete", "clusterroles", name="old-readonly",
                   groups=["system:masters", "system:authenticated"])
        # 4. secret access by an unexpected service account, ranked: prometheus lists secrets a few times.
        for i in range(4):
            self.event(t0 + timedelta(minutes=30 + i), "system:serviceaccount:monitoring:prometheus", "list",
                       "secrets", namespace="payments", agent="prometheus/2.51.0", ip="10.0.3.4")
        # Impersonation: an admin acting as a service account reads a secret.
        self.event(t0 + timedelta(minutes=40), "admin@example.com", "get", "secrets", namespace="payments",
                   name="stripe-key", impersonate="system:serviceaccount:payments:api",
                   groups=["system:masters", "system:authenticated"])
        # 5-7. the playbook's Falco rules.
        t1 = DAY + timedelta(hours=2)
        self.falco_alert(t1, "Fileless execution via memfd in container", "Warning",
                         ["container", "mitre_defense_evasion", "T1620"],
                         {"pod": "api-6f7c9-q2w3e", "ns": "payments", "evt.type": "memfd_create", "proc.name": "python3",
                          "proc.cmdline": "python3 -c exec(payload)", "proc.pid": 4242},
                         "memfd_create in container (user=root container=api proc=python3)")
        self.falco_alert(t1 + timedelta(minutes=5), "Unexpected ptrace in container", "Warning",
                         ["container", "mitre_credential_access", "T1055.008"],
                         {"pod": "api-6f7c9-q2w3e", "ns": "payments", "evt.type": "ptrace", "proc.name": "injector",
                          "proc.pid": 4250, "evt.dir": ">"},
                         "ptrace in container (user=root container=api proc=injector)")
        self.falco_alert(t1 + timedelta(minutes=6), "Unexpected ptrace in container", "Warning",
                         ["container", "mitre_credential_access"],
                         {"pod": "api-6f7c9-q2w3e", "ns": "payments", "evt.type": "ptrace", "proc.name": "strace",
                          "proc.pid": 4251, "evt.dir": ">"},
                         "ptrace in container (user=root container=api proc=strace)")
        self.falco_alert(t1 + timedelta(minutes=9), "Write to sensitive path in container", "Error",
                         ["container", "mitre_persistence", "T1098.004"],
                         {"pod": "api-6f7c9-q2w3e", "ns": "payments", "evt.type": "openat", "proc.name": "sh",
                          "fd.name": "/root/.ssh/authorized_keys", "evt.is_open_write": True},
                         "Sensitive path written in container (path=/root/.ssh/authorized_keys proc=sh)")

    def escalation_chain(self):
        t = DAY + timedelta(hours=2)
        pod_uid = self.uid()
        pod = "web-7d9f8c6b5-x2kq9"
        self.event(t, "system:serviceaccount:kube-system:replicaset-controller", "create", "pods", namespace="shop",
                   request={"kind": "Pod", "metadata": {"generateName": "web-7d9f8c6b5-"},
                            "spec": self.pod_spec("web", "registry.example.com/shop/web:1.8.2")},
                   response={"kind": "Pod", "metadata": {"name": pod, "namespace": "shop", "uid": pod_uid}},
                   agent="kube-controller-manager/v1.30.2", ip="10.0.0.10")
        alert_t = t + timedelta(minutes=15)
        self.falco_alert(alert_t, "Terminal shell in container", "Notice",
                         ["container", "shell", "mitre_execution", "T1059"],
                         {"pod": pod, "ns": "shop", "evt.type": "execve", "proc.name": "bash",
                          "proc.cmdline": "bash -i", "proc.pname": "runc", "proc.pid": 31337},
                         "A shell was spawned in a container with an attached terminal (proc=bash)")
        sa = "system:serviceaccount:shop:web"
        claims = self.sa_claims(pod, pod_uid)
        self.event(alert_t + timedelta(minutes=2), sa, "get", "namespaces", name="shop", extra=claims,
                   agent="curl/8.5.0", ip="10.244.2.17")
        self.event(alert_t + timedelta(minutes=6), sa, "list", "secrets", namespace="shop", extra=claims,
                   agent="curl/8.5.0", ip="10.244.2.17")
        self.event(alert_t + timedelta(minutes=9), sa, "create", "clusterrolebindings", name="web-admin",
                   extra=claims, agent="curl/8.5.0", ip="10.244.2.17",
                   request={"kind": "ClusterRoleBinding", "metadata": {"name": "web-admin"},
                            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                            "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]})
        # After the window: not part of the incident.
        self.event(alert_t + timedelta(minutes=45), sa, "get", "configmaps", namespace="shop", name="web-config",
                   extra=claims, agent="web/1.8.2", ip="10.244.2.17")

    def inventory(self) -> dict:
        """`kubectl get pods -A -o json` taken at the end of the day: resolves the pods whose
        creation is older than the audit log (their Falco alerts still get a service account)."""
        pods = [("payments", "api-6f7c9-q2w3e", "api"), ("shop", "cart-5b8d4-p9z8y", "cart"),
                ("monitoring", "grafana-7c5d9-k1l2m", None)]
        items = []
        for ns, name, sa in pods:
            spec = {"containers": [{"name": name.split("-")[0], "image": f"registry.example.com/{ns}/{name.split('-')[0]}"}],
                    "nodeName": "node-2"}
            if sa:
                spec["serviceAccountName"] = sa  # grafana: none set, so `default`
            items.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "uid": self.uid()},
                          "spec": spec, "status": {"phase": "Running"}})
        return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}

    def write(self, out: Path) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        files = {"audit": out / "audit.log", "falco": out / "falco.json", "pods": out / "pods.json"}
        files["pods"].write_text(json.dumps(self.inventory(), indent=2) + "\n")
        for kind, rows in (("audit", self.audit), ("falco", self.falco)):
            rows.sort(key=lambda r: r[0])
            files[kind].write_text("".join(json.dumps(ev, separators=(",", ":")) + "\n" for _, ev in rows))
        return files


def generate(out: Path) -> dict[str, Path]:
    cluster = Cluster()
    cluster.noise()
    cluster.hunts()
    cluster.escalation_chain()
    return cluster.write(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="fail if the committed files differ from a fresh run")
    args = parser.parse_args()
    if args.check:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp))
            stale = [k for k, p in fresh.items() if p.read_bytes() != (args.out / p.name).read_bytes()]
        if stale:
            print(f"demo data out of date: {stale}; run scripts/gen_demo_data.py", file=sys.stderr)
            return 1
        return 0
    files = generate(args.out)
    for kind, path in files.items():
        print(f"{kind}: {path} ({sum(1 for _ in path.open())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
