"""Computed ECS fields of Falco alerts (`=falco_*` in falco.alerts.yaml), MITRE ATT&CK from the tags."""
from __future__ import annotations

import re
from functools import lru_cache

from transforms.ecs.filters import ecs_function, valid_ip
from transforms.ecs.times import parse_time

_TECHNIQUE = re.compile(r"^(T\d{4})(\.\d{3})?$")


def _of(ev: dict, key: str):
    of = ev.get("output_fields")
    return of.get(key) if type(of) is dict else None


def _tags(ev: dict) -> list:
    tags = ev.get("tags")
    return tags if type(tags) is list else []


# Where the alert time is looked for, in order: output fields first (the syscall's time), then `time`.
TIME_OUTPUT_FIELDS = ("evt.time.iso8601", "evt.time", "evt_time")
TIME_FIELDS = tuple(f"output_fields.{key}" for key in TIME_OUTPUT_FIELDS) + ("time",)


def time_candidates(ev: dict) -> list[tuple[str, object]]:
    """(field, value) of each time field the alert has, for the dead-letter reason."""
    found = [(f"output_fields.{key}", _of(ev, key)) for key in TIME_OUTPUT_FIELDS] + [("time", ev.get("time"))]
    return [(name, value) for name, value in found if value is not None]


@ecs_function
def falco_timestamp(ev: dict):
    """The syscall's own time (evt.time.iso8601 / evt.time / evt_time: int ns or ISO text), else `time`."""
    for value in (_of(ev, "evt.time.iso8601"), _of(ev, "evt.time"), _of(ev, "evt_time"), ev.get("time")):
        if value is not None and value != "" and type(value) is not list and type(value) is not dict:
            text = parse_time(value)
            if text:
                return text
    return None


@ecs_function
def falco_outcome(ev: dict):
    res = _of(ev, "evt.res")
    if res is None:
        return None
    if res == "SUCCESS":
        return "success"
    return "failure" if _of(ev, "evt.failed") is True else None


@ecs_function
def falco_file_path(ev: dict):
    """fd.name when the fd is a file: Elastic's rule (fd.type file/directory), and also when fd.type
    is not in the output but fd.name is an absolute path (most file rules do not output fd.type)."""
    name = _of(ev, "fd.name")
    if type(name) is not str or not name:
        return None
    fd_type = _of(ev, "fd.type")
    if fd_type in ("file", "directory"):
        return name
    if fd_type is None and name.startswith("/") and "->" not in name:
        return name
    return None


@ecs_function
def falco_file_type(ev: dict):
    fd_type = _of(ev, "fd.type")
    if fd_type in ("file", "directory"):
        return fd_type
    return "file" if falco_file_path(ev) else None


@ecs_function
def falco_process_args(ev: dict):
    """Elastic's rule: [proc.exepath] + proc.args split on spaces."""
    path, args = _of(ev, "proc.exepath"), _of(ev, "proc.args")
    if type(path) is not str or type(args) is not str:
        return None
    return [path] + args.split(" ")


@ecs_function
def falco_category(ev: dict):
    """Elastic's mapping of evt.category (default process), plus file/network when those ECS sets exist."""
    cats = [_FALCO_CATEGORY.get(_of(ev, "evt.category"), "process")] if type(_of(ev, "evt.category")) is str \
        else ["process"]
    if "file" not in cats and falco_file_path(ev):
        cats.append("file")
    if "network" not in cats and any(type(_of(ev, k)) is str for k in ("fd.cip", "fd.sip", "fd.rip", "fd.lip")):
        cats.append("network")
    return cats


_FALCO_CATEGORY = {c: c for c in ("api", "authentication", "configuration", "database", "driver", "email",
                                   "file", "host", "iam", "intrusion_detection", "library", "malware",
                                   "network", "package", "process", "registry", "session", "threat",
                                   "vulnerability", "web")}
_FALCO_CATEGORY.update({"time": "configuration", "scheduler": "configuration", "system": "host",
                        "memory": "host", "sleep": "host", "wait": "host", "internal": "host", "ipc": "network",
                        "net": "network", "signal": "network", "processing": "process", "io_read": "process",
                        "io_write": "process", "io_other": "process", "user": "session"})


@ecs_function
def falco_orchestrator_type(ev: dict):
    return "kubernetes" if _of(ev, "k8s.pod.name") or _of(ev, "k8s.ns.name") else None


@ecs_function
def falco_resource_type(ev: dict):
    return "pod" if _of(ev, "k8s.pod.name") else None


@lru_cache(maxsize=1024)
def _tag_info(tags: tuple) -> tuple[list, list, list, list]:
    """(technique ids, sub-technique ids, tactic names, tactic ids) of a tag list; rules repeat their
    tags, so this is cached."""
    techniques, subs, tactics, tactic_ids = [], [], [], []
    for t in tags:
        if type(t) is not str:
            continue
        m = _TECHNIQUE.match(t)
        if m:
            if m.group(1) not in techniques:
                techniques.append(m.group(1))
            if m.group(2) and t not in subs:
                subs.append(t)
        elif t.startswith("mitre_") and len(t) > 6:
            key = t[6:]
            tactics.append(_TACTIC_NAME.get(key, key.replace("_", " ").title()))
            if key in _TACTIC_ID and _TACTIC_ID[key] not in tactic_ids:
                tactic_ids.append(_TACTIC_ID[key])
        elif _TACTIC_TAG.fullmatch(t) and t not in tactic_ids:
            tactic_ids.append(t)
    return techniques, subs, tactics, tactic_ids


_NO_TAGS = ([], [], [], [])


def _tag_view(ev: dict):
    tags = ev.get("tags")
    if type(tags) is not list or not tags:
        return _NO_TAGS
    try:
        return _tag_info(tuple(tags))
    except TypeError:  # unhashable junk in the tag list: not cached
        return _tag_info.__wrapped__(tuple(tags))


@ecs_function
def falco_techniques(ev: dict):
    """Technique ids from `T####` / `T####.###` tags (a sub-technique also names its technique)."""
    return _tag_view(ev)[0] or None


@ecs_function
def falco_subtechniques(ev: dict):
    return _tag_view(ev)[1] or None


@ecs_function
def falco_tactics(ev: dict):
    """`mitre_credential_access` -> `Credential Access`."""
    return _tag_view(ev)[2] or None


@ecs_function
def falco_tactic_ids(ev: dict):
    """From `mitre_*` tags (ATT&CK's tactic ids) and literal `TA####` tags."""
    return _tag_view(ev)[3] or None


@ecs_function
def falco_framework(ev: dict):
    view = _tag_view(ev)
    return "MITRE ATT&CK" if view[0] or view[2] or view[3] else None


_TACTIC_TAG = re.compile(r"TA\d{4}")
_TACTIC_ID = {"reconnaissance": "TA0043", "resource_development": "TA0042", "initial_access": "TA0001",
              "execution": "TA0002", "persistence": "TA0003", "privilege_escalation": "TA0004",
              "defense_evasion": "TA0005", "credential_access": "TA0006", "discovery": "TA0007",
              "lateral_movement": "TA0008", "collection": "TA0009", "command_and_control": "TA0011",
              "exfiltration": "TA0010", "impact": "TA0040"}
_TACTIC_NAME = {"command_and_control": "Command and Control"}


@ecs_function
def falco_related_ip(ev: dict):
    out = []
    for key in ("fd.cip", "fd.sip", "fd.lip", "fd.rip", "container.ip", "k8s.pod.ip"):
        ip = _of(ev, key)
        if type(ip) is str and ip not in out and valid_ip(ip):
            out.append(ip)
    return out or None


@ecs_function
def falco_time_ns(ev: dict):
    """The alert's own time as integer epoch nanoseconds, when Falco gave it that precisely."""
    for value in (_of(ev, "evt.time.iso8601"), _of(ev, "evt.time"), _of(ev, "evt_time")):
        if type(value) is int and value >= 10**17:
            return value
    return None

