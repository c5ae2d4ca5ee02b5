"""Normalise source records to Elastic Common Schema documents, driven by `mappings/ecs/*.yaml`.

A mapping is one line per ECS field (see the YAML files). It is loaded into a frozen ``EcsMapping``
(errors name ``file:line``) and compiled once into a list of (target path, getter) pairs, so the
per-event cost is a handful of dict lookups. Computed values are registered functions
(``@ecs_function``), looked up by name when the mapping is compiled.

Contract for every later stage: a document has ``@timestamp`` from the event's own time,
``event.dataset``, a deterministic ``event.id`` and the source object under its namespace
(``kubernetes.audit`` / ``falco``).
"""
from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import orjson
import yaml

import mappings
from transforms.records import AUDIT, DATASETS, FALCO

Getter = Callable[[dict], Any]
FUNCTIONS: dict[str, Callable[[dict], Any]] = {}

MAPPING_FILES = {AUDIT: "kubernetes.audit_logs.yaml", FALCO: "falco.alerts.yaml"}


class MappingError(ValueError):
    """A mapping file that cannot be compiled; the message starts with file:line."""


class NormaliseError(ValueError):
    """A record that cannot become an ECS document; the message is the dead-letter reason."""


def ecs_function(fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """Register `fn` so a mapping can name it as `=fn_name`."""
    FUNCTIONS[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------------------------------------
# Mapping model and compilation


@dataclass(frozen=True)
class FieldRule:
    target: str
    expr: str
    line: int


@dataclass(frozen=True)
class EcsMapping:
    file: str
    dataset: str
    original: str
    fields: tuple[FieldRule, ...]

    @staticmethod
    def load(path: Path) -> "EcsMapping":
        text = path.read_text()
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as err:
            raise MappingError(f"{path}: invalid YAML: {err}") from err
        if not isinstance(node, yaml.MappingNode):
            raise MappingError(f"{path}:1: a mapping file is a YAML mapping")
        top = {k.value: v for k, v in node.value}
        for key in ("dataset", "original", "fields"):
            if key not in top:
                raise MappingError(f"{path}:1: missing top-level key {key!r}")
        fields_node = top["fields"]
        if not isinstance(fields_node, yaml.MappingNode):
            raise MappingError(f"{path}:{fields_node.start_mark.line + 1}: 'fields' must map ECS field -> source")
        rules, seen = [], set()
        for key, value in fields_node.value:
            line = key.start_mark.line + 1
            if not isinstance(value, yaml.ScalarNode) or not str(value.value).strip():
                raise MappingError(f"{path}:{line}: {key.value}: the source must be one non-empty scalar")
            if key.value in seen:
                raise MappingError(f"{path}:{line}: {key.value} is mapped twice")
            seen.add(key.value)
            rules.append(FieldRule(key.value, str(value.value), line))
        return EcsMapping(str(path), top["dataset"].value, top["original"].value, tuple(rules))


def _path_getter(path: str) -> Getter:
    keys = tuple(path.split("."))
    if len(keys) == 1:
        key = keys[0]
        return lambda obj: obj.get(key)
    if len(keys) == 2:
        a, b = keys

        def get2(obj):
            v = obj.get(a)
            return v.get(b) if isinstance(v, dict) else None
        return get2

    def get(obj):
        for k in keys:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(k)
        return obj
    return get


def _output_field_getter(key: str) -> Getter:
    def get(obj):
        of = obj.get("output_fields")
        return of.get(key) if isinstance(of, dict) else None
    return get


def compile_rule(rule: FieldRule, file: str) -> Getter:
    expr = rule.expr.strip()
    if expr.startswith("="):
        name = expr[1:]
        if name not in FUNCTIONS:
            raise MappingError(f"{file}:{rule.line}: {rule.target}: unknown function {name!r} "
                               f"(registered: {', '.join(sorted(FUNCTIONS))})")
        return FUNCTIONS[name]
    if expr.startswith("of:"):
        return _output_field_getter(expr[3:])
    if expr[0] in "'\"[{0123456789-":
        try:
            const = ast.literal_eval(expr)
        except (ValueError, SyntaxError) as err:
            raise MappingError(f"{file}:{rule.line}: {rule.target}: bad constant {expr!r}: {err}") from err
        return lambda obj: const
    if not re.fullmatch(r"[A-Za-z_@][\w@-]*(\.[\w@-]+)*", expr):
        raise MappingError(f"{file}:{rule.line}: {rule.target}: {expr!r} is not a dotted path, =function or constant")
    return _path_getter(expr)


@dataclass(frozen=True)
class CompiledMapping:
    dataset: str
    original: tuple[str, ...]
    rules: tuple[tuple[tuple[str, ...], Getter], ...]

    def apply(self, record: dict) -> dict:
        doc: dict = {}
        for path, getter in self.rules:
            value = getter(record)
            if value is None or value == [] or value == "":
                continue
            _set(doc, path, value)
        return doc


def _set(doc: dict, path: tuple[str, ...], value) -> None:
    node = doc
    for key in path[:-1]:
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
        node = nxt
    node[path[-1]] = value


def compile_mapping(mapping: EcsMapping) -> CompiledMapping:
    rules = tuple((tuple(r.target.split(".")) if r.target != "@timestamp" else ("@timestamp",),
                   compile_rule(r, mapping.file)) for r in mapping.fields)
    return CompiledMapping(mapping.dataset, tuple(mapping.original.split(".")), rules)


@lru_cache(maxsize=None)
def load_mapping(source: str, directory: str | None = None) -> CompiledMapping:
    folder = Path(directory) if directory else mappings.path("ecs")
    return compile_mapping(EcsMapping.load(folder / MAPPING_FILES[source]))


# ---------------------------------------------------------------------------------------------
# Time helpers


def parse_time(value: Any) -> str | None:
    """Any event time -> RFC 3339 UTC text with the source's own precision (up to ns).

    Accepts RFC 3339 text (any offset) and integer/float epoch in ns, µs, ms or s.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        n = int(value)
        if abs(n) >= 10**17:
            secs, frac, digits = divmod(n, 10**9)[0], n % 10**9, 9
        elif abs(n) >= 10**14:
            secs, frac, digits = n // 10**6, n % 10**6, 6
        elif abs(n) >= 10**11:
            secs, frac, digits = n // 10**3, n % 10**3, 3
        else:
            secs, frac, digits = n, 0, 0
        base = datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{base}.{frac:0{digits}d}Z" if digits else f"{base}Z"
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z") and len(text) >= 20 and text[10] == "T":
            return text
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?\s*([+-]\d\d:?\d\d|Z)?", text)
        if not m:
            return None
        date, clock, frac, offset = m.groups()
        if offset in (None, "Z", "+00:00", "+0000", "-00:00"):
            return f"{date}T{clock}{frac or ''}Z"
        dt = datetime.fromisoformat(f"{date}T{clock}{offset if ':' in offset else offset[:3] + ':' + offset[3:]}")
        utc = dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{utc}{frac or ''}Z"
    return None


def to_epoch_ms(rfc3339: str) -> int:
    """RFC 3339 UTC text -> integer epoch milliseconds (Beam's timestamp precision)."""
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    secs = int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return secs * 1000 + int((frac + "000")[:3])


# ---------------------------------------------------------------------------------------------
# Audit functions

_RBAC = {"clusterroles", "clusterrolebindings", "roles", "rolebindings", "serviceaccounts",
         "certificatesigningrequests", "tokenreviews", "subjectaccessreviews"}
_VERB_TYPE = {"create": "creation", "update": "change", "patch": "change", "delete": "deletion",
              "deletecollection": "deletion", "get": "access", "list": "access", "watch": "access"}


@ecs_function
def audit_timestamp(ev: dict):
    return parse_time(ev.get("requestReceivedTimestamp") or ev.get("timestamp") or ev.get("stageTimestamp"))


@ecs_function
def audit_outcome(ev: dict):
    status = ev.get("responseStatus")
    code = status.get("code") if isinstance(status, dict) else None
    if not isinstance(code, int):
        return "unknown"
    return "success" if code < 400 else "failure"


@ecs_function
def audit_category(ev: dict):
    ref = ev.get("objectRef")
    resource = ref.get("resource") if isinstance(ref, dict) else None
    if resource in _RBAC:
        return ["iam", "api"]
    if resource in ("pods", "deployments", "daemonsets", "statefulsets", "replicasets", "jobs", "cronjobs"):
        return ["process", "api"] if (ref.get("subresource") in ("exec", "attach")) else ["configuration", "api"]
    return ["api"]


@ecs_function
def audit_type(ev: dict):
    types = []
    verb_type = _VERB_TYPE.get(ev.get("verb"))
    if verb_type:
        types.append(verb_type)
    annotations = ev.get("annotations")
    decision = annotations.get("authorization.k8s.io/decision") if isinstance(annotations, dict) else None
    if decision == "allow":
        types.append("allowed")
    elif decision == "forbid":
        types.append("denied")
    return types or ["info"]


@ecs_function
def audit_resource_name(ev: dict):
    ref = ev.get("objectRef")
    name = ref.get("name") if isinstance(ref, dict) else None
    if name:
        return name
    # Pods created through generateName have no name in the request; the response carries it.
    resp = ev.get("responseObject")
    meta = resp.get("metadata") if isinstance(resp, dict) else None
    return meta.get("name") if isinstance(meta, dict) else None


@ecs_function
def audit_exec_command(ev: dict):
    ref = ev.get("objectRef")
    if not isinstance(ref, dict) or ref.get("subresource") not in ("exec", "attach"):
        return None
    uri = ev.get("requestURI")
    if not isinstance(uri, str):
        return None
    command = parse_qs(urlsplit(uri).query).get("command")
    return " ".join(command) if command else None


@ecs_function
def audit_related_user(ev: dict):
    out = []
    for block in (ev.get("user"), ev.get("impersonatedUser")):
        if isinstance(block, dict):
            for key in ("uid", "username"):
                value = block.get(key)
                if isinstance(value, str) and value and value not in out:
                    out.append(value)
    return out


# ---------------------------------------------------------------------------------------------
# Falco functions

_SEVERITY = {"emergency": 99, "alert": 99, "critical": 99, "error": 73, "warning": 47, "notice": 47,
             "informational": 21, "info": 21, "debug": 21}
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")


def _of(ev: dict, key: str):
    of = ev.get("output_fields")
    return of.get(key) if isinstance(of, dict) else None


@ecs_function
def falco_timestamp(ev: dict):
    return parse_time(_of(ev, "evt.time.iso8601") or _of(ev, "evt.time") or ev.get("time"))


@ecs_function
def falco_severity(ev: dict):
    return _SEVERITY.get(str(ev.get("priority", "")).lower())


@ecs_function
def falco_level(ev: dict):
    priority = ev.get("priority")
    return priority.lower() if isinstance(priority, str) else None


@ecs_function
def falco_category(ev: dict):
    tags = ev.get("tags") or []
    cats = []
    if "process" in tags or _of(ev, "proc.name"):
        cats.append("process")
    if "filesystem" in tags or _of(ev, "fd.name"):
        cats.append("file")
    if "network" in tags:
        cats.append("network")
    return cats or ["intrusion_detection"]


@ecs_function
def falco_orchestrator_type(ev: dict):
    return "kubernetes" if _of(ev, "k8s.pod.name") or _of(ev, "k8s.ns.name") else None


@ecs_function
def falco_resource_type(ev: dict):
    return "pod" if _of(ev, "k8s.pod.name") else None


@ecs_function
def falco_techniques(ev: dict):
    return [t for t in ev.get("tags") or [] if isinstance(t, str) and _TECHNIQUE.match(t)]


@ecs_function
def falco_tactics(ev: dict):
    return [t[6:].replace("_", " ").title() for t in ev.get("tags") or []
            if isinstance(t, str) and t.startswith("mitre_")]


# ---------------------------------------------------------------------------------------------
# Identity and assembly


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def event_id(source: str, record: dict) -> str:
    """Deterministic document id.

    audit: auditID + stage + a digest of the whole record, so a re-shipped identical event dedupes
    while two different events that reuse an auditID + stage (Elastic's own samples do) stay apart.
    falco: Falco's `uuid` when present, else a digest of the whole alert.
    Digests are taken over the record re-serialised with sorted keys, so the same event shipped in an
    EventList, an AKS wrapper or on its own gets the same id.
    """
    canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    if source == AUDIT:
        return f"{record.get('auditID', 'none')}-{str(record.get('stage', 'none'))[:16]}-{_digest(canonical)}"
    uuid = record.get("uuid")
    if isinstance(uuid, str) and uuid:
        return uuid
    return f"falco-{_digest(canonical)}"


class Normaliser:
    """Compiled mappings for both sources; `to_ecs` turns one record into one ECS document."""

    def __init__(self, mapping_dir: str | None = None):
        self._maps = {source: load_mapping(source, mapping_dir) for source in (AUDIT, FALCO)}

    def to_ecs(self, source: str, record: dict, envelope: str = "") -> dict:
        if source == AUDIT and envelope == "gke":
            raise NormaliseError("GKE Cloud Logging (protoPayload) records are not supported yet")
        mapping = self._maps[source]
        doc = mapping.apply(record)
        if "@timestamp" not in doc:
            raise NormaliseError(f"{source} record has no usable event time")
        event = doc.setdefault("event", {})
        event["dataset"] = mapping.dataset
        event["id"] = event_id(source, record)
        node = doc
        for key in mapping.original[:-1]:
            node = node.setdefault(key, {})
        node[mapping.original[-1]] = record
        return doc
