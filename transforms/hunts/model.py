"""The hunt model: frozen dataclasses for a hunt file, and the one generic loader that validates them.

A hunt file (``mappings/hunts/<id>.yaml``, the file name is the id) is parsed once with PyYAML's safe
loader into a node tree (which keeps line numbers), then ``_load`` walks the tree and the dataclass
fields together: each field's type says how to read its node (text, number, flag, list of names,
nested dataclass, label -> field mapping, raw example events), and an optional ``check`` in the
field's metadata says what else must hold. Every error is ``file:line: dotted.key: reason``, where
the line is that of the offending node, however deep.
"""
from __future__ import annotations

import re
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml
from transforms.sources import ALL as SOURCE_REGISTRY


class HuntError(ValueError):
    """A hunt file that cannot be loaded; the message starts with file[:line] and says why."""


# A hunt's `source` is a dataset of the registry; its short name feeds the hunt's examples.
SOURCES = tuple(src.dataset for src in SOURCE_REGISTRY)
RAW_SOURCE = {src.dataset: src.name for src in SOURCE_REGISTRY}
SEVERITIES = ("low", "medium", "high", "critical")
HUNT_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
LIST_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TACTIC = re.compile(r"^TA\d{4}$")
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_FIELD = re.compile(r"^@?[A-Za-z_][\w.@-]*$")


@dataclass(frozen=True, init=False)
class HuntSettings:
    """User-tunable hunt configuration: plain data, picklable, passed to workers.

    ``lists`` holds overrides of the tunable lists hunt files declare (``lists: {name: [defaults]}``)
    and use as ``setting('name')``: ``HuntSettings(lists={"known_memfd_users": ("java",)})``, or as
    keywords (``HuntSettings(known_memfd_users=("java",))``). Reading ``settings.known_memfd_users``
    gives the override, else the shipped default.
    """
    hunts_dir: str | None
    lists: tuple[tuple[str, tuple[str, ...]], ...]

    def __init__(self, hunts_dir: str | None = None, lists=(), **named: tuple[str, ...]):
        merged = dict(lists.items() if isinstance(lists, dict) else lists)
        merged.update(named)
        object.__setattr__(self, "hunts_dir", hunts_dir)
        object.__setattr__(self, "lists", tuple(sorted((str(k), tuple(v)) for k, v in merged.items())))

    def override(self, name: str) -> tuple[str, ...] | None:
        return dict(self.lists).get(name)

    def __getattr__(self, name: str):
        # Only for names that are not fields: the list values, by name (older code reads them so).
        if name.startswith("_") or "lists" not in self.__dict__:
            raise AttributeError(name)
        from transforms.hunts.catalogue import resolved_lists
        values = resolved_lists(self)
        if name not in values:
            raise AttributeError(f"no hunt list {name!r} (known: {', '.join(sorted(values))})")
        return values[name]


# ---------------------------------------------------------------------------------------------
# Model. Field metadata: `check` (value -> error text or None), `key` (the YAML key, if not the name).

def _check(fn: Callable[[Any], str | None], **kw):
    return field(metadata={"check": fn}, **kw)


def _pattern(regex: re.Pattern, what: str) -> Callable[[str], str | None]:
    return lambda v: None if regex.match(v) else f"{v!r} is not {what}"


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else f"{v!r} is not one of {', '.join(choices)}"


@dataclass(frozen=True)
class Ref:
    id: str
    name: str


@dataclass(frozen=True)
class Mitre:
    tactic: Ref = _check(lambda r: None if _TACTIC.match(r.id) else f"tactic id {r.id!r} is not TA####")
    technique: Ref = _check(lambda r: None if _TECHNIQUE.match(r.id)
                            else f"technique id {r.id!r} is not T#### or T####.###")

    @property
    def tactic_id(self) -> str:
        return self.tactic.id

    @property
    def tactic_name(self) -> str:
        return self.tactic.name

    @property
    def technique_id(self) -> str:
        return self.technique.id

    @property
    def technique_name(self) -> str:
        return self.technique.name


Events = tuple[dict, ...]


def _events(v) -> str | None:
    if not v:
        return "must be a non-empty list of raw events (objects)"
    return None


@dataclass(frozen=True)
class Examples:
    match: Events = _check(lambda v: _events(v) and f"`match` {_events(v)}")
    no_match: Events = _check(lambda v: _events(v) and f"`no_match` {_events(v)}")


Fields = tuple[tuple[str, str], ...]  # (label, ECS field) pairs, in file order
Lists = tuple[tuple[str, tuple[str, ...]], ...]


def _fields(v: Fields) -> str | None:
    if not v or not all(_FIELD.match(f) for _, f in v):
        return "must map a label to an ECS field name (label: user.name)"
    return None


def _names(v: tuple[str, ...]) -> str | None:
    bad = [f for f in v if not _FIELD.match(f)]
    return f"{bad[0]!r} is not an ECS field name" if bad else None


@dataclass(frozen=True)
class Hunt:
    id: str
    file: str
    title: str
    hypothesis: str
    source: str = _check(_one_of(SOURCES))
    severity: str = _check(_one_of(SEVERITIES))
    risk_score: float = _check(lambda v: None if 0 <= v <= 100 else "must be a number from 0 to 100")
    mitre: Mitre = field(default=MISSING)
    match: str = field(default=MISSING)
    fields: Fields = _check(_fields)          # the analyst's columns
    examples: Examples = field(default=MISSING)
    ranking: tuple[str, ...] = _check(_names, default=())   # ECS fields `kubehunt report` counts by
    notes: str = ""
    aliases: tuple[str, ...] = _check(lambda v: next((f"{a!r} is not an id" for a in v if not HUNT_ID.match(a)),
                                                     None), default=())
    confirms_incident: bool = False           # a match by a correlated account confirms the incident
    lists: Lists = _check(lambda v: next((f"{n!r} is not a list name (lower_case)" for n, _ in v
                                          if not LIST_NAME.match(n)), None), default=())

    def example_events(self, kind: str) -> tuple[dict, ...]:
        return getattr(self.examples, kind)

    @property
    def raw_source(self) -> str:
        return RAW_SOURCE[self.source]


# ---------------------------------------------------------------------------------------------
# The generic loader

_TEXT_FIELDS = {"hypothesis", "notes", "match"}  # folded to one line


class _Loader:
    def __init__(self, path: Path):
        self.path = path
        self.constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, key: str, why: str):
        line = node.start_mark.line + 1 if node is not None else 1
        raise HuntError(f"{self.path}:{line}: {key}: {why}" if key else f"{self.path}:{line}: {why}")

    def raw(self, node: yaml.Node):
        return self.constructor.construct_object(node, deep=True)

    def scalar(self, node, key: str, kind: type):
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, key, f"must be {'text' if kind is str else kind.__name__}")
        value = self.raw(node)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(node, key, "must be a number")
            return float(value)
        if kind is bool:
            if not isinstance(value, bool):
                self.fail(node, key, "must be true or false")
            return value
        if not isinstance(value, str) or not value.strip():
            self.fail(node, key, "must be non-empty text")
        return value

    def value(self, node, key: str, hint):
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint in (str, float, bool):
            return self.scalar(node, key, hint)
        if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
            return self.dataclass(hint, node, key)
        if origin is tuple and args and typing.get_origin(args[0]) is tuple:   # a mapping kept as ordered pairs
            if not isinstance(node, yaml.MappingNode):
                self.fail(node, key, "must be a mapping")
            key_hint, value_hint = typing.get_args(args[0])
            return tuple((self.value(k, key, key_hint), self.value(v, f"{key}.{k.value}", value_hint))
                         for k, v in node.value)
        if origin is tuple and args == (dict, Ellipsis):   # raw example events
            if not isinstance(node, yaml.SequenceNode) or \
                    not all(isinstance(n, yaml.MappingNode) for n in node.value):
                self.fail(node, key, f"`{key.rsplit('.', 1)[-1]}` must be a non-empty list of raw events (objects)")
            return tuple(self.raw(n) for n in node.value)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            if not isinstance(node, yaml.SequenceNode):
                self.fail(node, key, "must be a list")
            return tuple(self.value(n, f"{key}[{i}]", args[0]) for i, n in enumerate(node.value))
        raise TypeError(f"hunt model: unsupported field type {hint!r}")  # a bug here, not in the file

    def dataclass(self, cls, node, where: str = "", extra: dict | None = None):
        prefix = f"{where}." if where else ""
        if not isinstance(node, yaml.MappingNode):
            names = ", ".join(f.name for f in fields(cls))
            self.fail(node, where, f"must be a mapping of {names}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in fields(cls) if f.name not in (extra or {})}  # extra: not from the file
        given: dict[str, tuple] = {}
        for k, v in node.value:
            name = self.raw(k)
            if name not in known:
                allowed = ", ".join(known)
                self.fail(k, f"{prefix}{name}", f"unknown key (allowed: {allowed})")
            given[name] = (k, v)
        values = dict(extra or {})
        for name, f in known.items():
            if name not in given:
                if f.default is MISSING and f.default_factory is MISSING:
                    line_node = node if where else None
                    self.fail(line_node, "", f"missing required key {prefix + name!r}")
                continue
            key_node, value_node = given[name]
            value = self.value(value_node, prefix + name, hints[name])
            if name in _TEXT_FIELDS and isinstance(value, str):
                value = " ".join(value.split())
            elif isinstance(value, str):
                value = value.strip()
            check = f.metadata.get("check")
            why = check(value) if check else None
            if why:
                self.fail(value_node, prefix + name, why)
            values[name] = value
        return cls(**values)


def parse_hunt(path: Path) -> Hunt:
    """Load and validate one hunt file; every error names the file, the line and the reason."""
    path = Path(path)
    hunt_id = path.stem
    if not HUNT_ID.match(hunt_id):
        raise HuntError(f"{path}: the file name (the hunt id) must be lowercase words joined by '-'")
    try:
        node = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise HuntError(f"{path}: invalid YAML: {err}") from None
    loader = _Loader(path)
    if not isinstance(node, yaml.MappingNode):
        raise HuntError(f"{path}:1: a hunt file is a YAML mapping")
    # `id:` is optional and must repeat the file name; it is not a model field to fill from the file.
    rest = []
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == "id":
            if loader.raw(v) != hunt_id:
                loader.fail(k, "id", f"{loader.raw(v)!r} differs from the file name {hunt_id!r}; "
                                     "the file name is the id")
            continue
        rest.append((k, v))
    node.value = rest
    return loader.dataclass(Hunt, node, extra={"id": hunt_id, "file": str(path)})
