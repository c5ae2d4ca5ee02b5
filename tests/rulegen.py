"""Events built from a rule's own query: for a KQL AST (transforms.kql), raw Kubernetes audit Events
that must trigger it and near misses that must not (each top-level condition violated in turn,
so every exception the rule lists is exercised).

How: a small backtracking solver assigns ECS field values that make the query true (or one
condition false), the assignment is written back into a raw audit Event (ECS name -> audit
field), the Event is normalised by kubehunt's real Normaliser, and the query is evaluated on that
document in Python (`kql.evaluate`, keyword semantics). Only events whose evaluated outcome is the
intended one are returned: the test's expectations never rest on the solver alone.
"""
from __future__ import annotations

import copy
from datetime import datetime, timezone

from transforms import kql
from transforms.ecs import Normaliser

N = Normaliser()
ABSENT = object()

# ECS name -> audit Event path (the inverse of mappings/ecs/kubernetes.audit_logs.yaml, for the
# fields rules query).
ECS_TO_AUDIT = {
    "event.action": "verb",
    "user.name": "user.username",
    "user_agent.original": "userAgent",
    "source.ip": "sourceIPs",
    "kubernetes.audit.annotations.authorization_k8s_io/decision": "annotations.authorization.k8s.io/decision",
    "kubernetes.audit.annotations.authorization_k8s_io/reason": "annotations.authorization.k8s.io/reason",
}
# ECS fields that are copies of one audit field: one variable for the solver.
CANON = {"user.name": "kubernetes.audit.user.username", "event.action": "kubernetes.audit.verb",
         "user_agent.original": "kubernetes.audit.userAgent", "source.ip": "kubernetes.audit.sourceIPs",
         "user.effective.name": "kubernetes.audit.impersonatedUser.username"}
CONSTANT = {"data_stream.dataset": "kubernetes.audit_logs", "event.dataset": "kubernetes.audit_logs",
            "data_stream.type": "logs"}
LISTS = {"containers", "volumes", "rules", "webhooks", "initContainers", "ephemeralContainers"}
LEAF_LISTS = {"groups", "sourceIPs", "verbs", "resources", "apiGroups", "add", "drop", "resourceNames"}
SAMPLES = {"kubernetes.audit.sourceIPs": ["10.20.30.40"], "kubernetes.audit.userAgent": ["kh-agent/1.0", "curl/8.5.0"],
           "kubernetes.audit.user.username": ["kh-user"]}
BOOLEAN_LEAVES = {"hostNetwork", "hostPID", "hostIPC", "privileged", "allowPrivilegeEscalation"}


def base_event(audit_id: str) -> dict:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": audit_id,
            "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/kh-ns/khthings/kh-obj", "verb": "get",
            "user": {"username": "kh-user", "groups": ["system:authenticated"]},
            "sourceIPs": ["10.20.30.40"], "userAgent": "kh-agent/1.0",
            "objectRef": {"resource": "khthings", "namespace": "kh-ns", "name": "kh-obj", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": now, "stageTimestamp": now,
            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}}


def _fill(value: str, filler: str) -> str:
    return value.replace(kql.WILDCARD, filler)


def _candidates(node: kql.Is) -> list:
    if node.exists:
        return SAMPLES.get(node.field, ["kh-value"])
    if node.has_wildcard:
        return [_fill(node.value, f) for f in ("", "kh", "x/y")]
    return [node.value]


class _Solver:
    def __init__(self):
        self.limit = 2000

    def gen(self, node, want: bool, asg: dict, negs: dict):
        self.limit -= 1
        if self.limit < 0:
            return
        if isinstance(node, kql.Is):
            yield from self._is(node, want, asg, negs)
        elif node.op == "not":
            yield from self.gen(node.items[0], not want, asg, negs)
        elif (node.op == "and") == want:       # and/True, or/False: every item
            yield from self._all(list(node.items), want, asg, negs)
        else:                                  # or/True, and/False: one item
            for item in node.items:
                yield from self.gen(item, want, asg, negs)

    def _all(self, items, want, asg, negs):
        if not items:
            yield asg, negs
            return
        for a, n in self.gen(items[0], want, asg, negs):
            yield from self._all(items[1:], want, a, n)

    def _is(self, node, want, asg, negs):
        field = CANON.get(node.field, node.field)
        node = kql.Is(field, node.value, node.quoted)
        if field in CONSTANT:
            ok = kql.evaluate(node, {field: CONSTANT[field]})
            if ok == want:
                yield asg, negs
            return
        if field in asg:
            value = asg[field]
            ok = value is not ABSENT and kql.evaluate(node, {field: value})
            if ok == want:
                yield asg, negs
            return
        if want:
            for value in _candidates(node):
                if not any(kql.evaluate(n, {field: value}) for n in negs.get(field, ())):
                    yield {**asg, field: value}, negs
        else:
            yield asg, {**negs, field: negs.get(field, ()) + (node,)}


def _set(event: dict, path: list[str], value) -> None:
    node = event
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part)
        if part in LISTS:
            if not isinstance(nxt, list) or not nxt:
                nxt = [{}]
                node[part] = nxt
            node = nxt[0]
        else:
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
    leaf = path[-1]
    if value is ABSENT:
        node.pop(leaf, None)
    elif leaf in BOOLEAN_LEAVES and value in ("true", "false"):
        node[leaf] = value == "true"
    elif leaf in LEAF_LISTS:
        node[leaf] = [value]
    else:
        node[leaf] = value


def _audit_path(field: str) -> list[str] | None:
    if field in ECS_TO_AUDIT:
        mapped = ECS_TO_AUDIT[field]
        if mapped.startswith("annotations."):
            return ["annotations", mapped[len("annotations."):]]
        return mapped.split(".")
    if field.startswith("kubernetes.audit."):
        rest = field[len("kubernetes.audit."):]
        for who in ("user.extra.", "impersonatedUser.extra."):
            if rest.startswith(who):
                return who.rstrip(".").split(".") + [rest[len(who):]]
        return rest.split(".")
    return None


def materialise(asg: dict, negs: dict, audit_id: str) -> dict | None:
    event = base_event(audit_id)
    for field, value in asg.items():
        path = _audit_path(field)
        if path is None:
            return None
        _set(event, path, value)
    # A field that must not match something keeps the base value unless it matches; then it goes.
    for field, nodes in negs.items():
        if field in asg:
            continue
        path = _audit_path(field)
        if path is None:
            continue
        probe = es_view(N.to_ecs("audit", event, "event"))
        if any(kql.evaluate(n, probe) for n in nodes):
            _set(event, path, ABSENT)
    return event


def es_view(doc: dict) -> dict:
    """The document as the index shows it to queries: plus the template's runtime fields
    (Elastic's renamed annotation keys, computed from the stored ones) and the fields the ingest
    pipeline sets."""
    doc = copy.deepcopy(doc)
    # Written by the kubehunt-events ingest pipeline from the destination's name.
    doc["data_stream"] = {"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "any"}
    ann = doc.get("kubernetes", {}).get("audit", {}).get("annotations")
    if isinstance(ann, dict):
        for key in ("decision", "reason"):
            if isinstance(ann.get(f"authorization.k8s.io/{key}"), str):
                ann[f"authorization_k8s_io/{key}"] = ann[f"authorization.k8s.io/{key}"]
    return doc


def _conditions(ast):
    return list(ast.items) if isinstance(ast, kql.Bool) and ast.op == "and" else [ast]


def events_for(query: str, key: str) -> tuple[list[dict], list[dict]]:
    """(events that must trigger, events that must not) for a KQL query; auditIDs start with `key`."""
    ast = kql.parse(query)
    triggers, misses = [], []

    def first(node_wants, label):
        solver = _Solver()
        for asg, negs in _pairs(solver, node_wants):
            event = materialise(asg, negs, f"{key}-{label}")
            if event is None:
                continue
            doc = es_view(N.to_ecs("audit", event, "event"))
            if kql.evaluate(ast, doc) == (label == "hit"):
                return event
        return None

    hit = first([(ast, True)], "hit")
    if hit:
        triggers.append(hit)
    conds = _conditions(ast)
    for i, cond in enumerate(conds):
        others = [(c, True) for j, c in enumerate(conds) if j != i]
        miss = first([(cond, False)] + others, f"miss{i}")
        if miss:
            misses.append(miss)
    return triggers, misses


def _pairs(solver, node_wants):
    def rec(items, asg, negs):
        if not items:
            yield asg, negs
            return
        node, want = items[0]
        for a, n in solver.gen(node, want, asg, negs):
            yield from rec(items[1:], a, n)
    yield from rec(node_wants, {}, {})


def event_copy(event: dict, audit_id: str, **changes) -> dict:
    out = copy.deepcopy(event)
    out["auditID"] = audit_id
    out.update(changes)
    return out
