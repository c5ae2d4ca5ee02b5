"""Normalise source records to Elastic Common Schema documents, driven by `mappings/ecs/*.yaml`.

A mapping is one line per ECS field::

    ecs.field: source [?? source ...] [| filter[:arg] ...]

where a *source* is a dotted path in the record (``user.username``), ``of:<key>`` (one Falco output
field by its exact, dotted key), ``=function`` (a registered function of the record) or a constant
(``"'text'"``, a number, a list); ``??`` takes the first source that gives a value; *filters*
(``FILTERS``) convert and type-check the value (``str``, ``long``, ``ip``, ``date``, ``bool``,
``split``, ``lower``, ``table:<name>`` for a lookup in the file's ``tables:`` section ...).

Every rule ends in a type guard, so a value the index template could not store (an object where a
keyword is mapped, text where a boolean is mapped) is left out of the ECS field instead of making
Elasticsearch reject the event; such fields are listed in ``kubehunt.normalise.dropped`` (the
original value is still in the source namespace). The source namespace itself (``kubernetes.audit``
/ ``falco``) is checked against the field types of its index template (``template:`` in the mapping
file): a record that would be rejected there is a ``NormaliseError`` with the field and the reason.

The mapping is loaded into a frozen ``EcsMapping`` (errors name ``file:line``) and compiled once
into a tuple of (target path, getter) pairs, so the per-event cost is a handful of dict lookups.

Contract for every later stage: a document has ``@timestamp`` from the event's own time (RFC 3339
UTC text, the source's own precision), ``event.dataset``, a deterministic ``event.id`` and the
source record under its namespace (``kubernetes.audit`` / ``falco``).
"""
from __future__ import annotations

import ast
import hashlib
import ipaddress
import json
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
from transforms.records import AUDIT, FALCO

Getter = Callable[[dict], Any]
FUNCTIONS: dict[str, Callable[[dict], Any]] = {}
FILTERS: dict[str, Callable[..., Callable[[Any], Any]]] = {}

MAPPING_FILES = {AUDIT: "kubernetes.audit_logs.yaml", FALCO: "falco.alerts.yaml"}

# A value a guard refused: the rule's field is left out and named in kubehunt.normalise.dropped.
DROPPED = object()

# Elasticsearch ids are at most 512 bytes; source ids (auditID, uuid) are client data.
_MAX_ID_PART = 128


class MappingError(ValueError):
    """A mapping file that cannot be compiled; the message starts with file:line."""


class NormaliseError(ValueError):
    """A record that cannot become an ECS document; the message is the dead-letter reason."""


def ecs_function(fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """Register `fn` so a mapping can name it as `=fn_name`."""
    FUNCTIONS[fn.__name__] = fn
    return fn


def ecs_filter(name: str, typed: bool = False):
    """Register a filter factory `(arg, tables) -> (value -> value | None | DROPPED)` as `| name[:arg]`.

    `typed` filters already guarantee a storable value, so no keyword guard is appended after them.
    """
    def register(factory):
        factory.typed = typed
        FILTERS[name] = factory
        return factory
    return register


# ---------------------------------------------------------------------------------------------
# Value guards and filters


def _has_object(value) -> bool:
    """True when a list (at any depth) holds a dict: Elasticsearch cannot store that in a leaf field."""
    for item in value:
        if type(item) is dict or (type(item) is list and _has_object(item)):
            return True
    return False


def keyword_guard(value):
    """Scalars and lists of scalars pass; objects (which a keyword/long/date/ip field rejects) drop."""
    t = type(value)
    if t is str or t is int or t is float or t is bool:
        return value
    if t is list:
        return DROPPED if _has_object(value) else value
    return DROPPED


@ecs_filter("keyword", typed=True)
def _f_keyword(arg, tables):
    return keyword_guard


@ecs_filter("str", typed=True)
def _f_str(arg, tables):
    def to_str(value):
        t = type(value)
        if t is str:
            return value
        if t is bool:
            return "true" if value else "false"
        if t is int or t is float:
            return str(value)
        if t is list:
            out = [to_str(v) for v in value]
            return DROPPED if any(v is DROPPED for v in out) else [v for v in out if v is not None]
        return DROPPED
    return to_str


@ecs_filter("long", typed=True)
def _f_long(arg, tables):
    def to_long(value):
        t = type(value)
        if t is int:
            return value if -2**63 <= value < 2**63 else DROPPED
        if t is str:
            text = value.strip()
            if text.lstrip("-").isdigit():
                n = int(text)
                return n if -2**63 <= n < 2**63 else DROPPED
            return DROPPED
        if t is float and value.is_integer():
            return int(value)
        if t is list:
            out = [to_long(v) for v in value]
            return DROPPED if any(v is DROPPED for v in out) else out
        return DROPPED
    return to_long


@ecs_filter("bool", typed=True)
def _f_bool(arg, tables):
    def to_bool(value):
        if type(value) is bool:
            return value
        if value in ("true", "false"):
            return value == "true"
        return DROPPED
    return to_bool


@lru_cache(maxsize=4096)
def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


@ecs_filter("ip", typed=True)
def _f_ip(arg, tables):
    """Keep the valid IP addresses (a list stays a list); Elastic's `convert: ip` drops the lot."""
    def to_ip(value):
        if type(value) is str:
            return value if _valid_ip(value) else DROPPED
        if type(value) is list:
            ips = [v for v in value if type(v) is str and _valid_ip(v)]
            return ips if ips else (DROPPED if value else None)
        return DROPPED
    return to_ip


@ecs_filter("date", typed=True)
def _f_date(arg, tables):
    def to_date(value):
        if type(value) is list or type(value) is dict:
            return DROPPED
        text = parse_time(value)
        return text if text is not None and _storable_time(text) else DROPPED
    return to_date


@ecs_filter("lower")
def _f_lower(arg, tables):
    return lambda value: value.lower() if type(value) is str else value


@ecs_filter("split")
def _f_split(arg, tables):
    """Split text on whitespace (or on `arg`) into a list."""
    sep = arg or None
    return lambda value: [p for p in value.split(sep) if p] if type(value) is str else value


@ecs_filter("list")
def _f_list(arg, tables):
    return lambda value: value if type(value) is list else [value]


@ecs_filter("table")
def _f_table(arg, tables):
    if arg not in tables:
        raise KeyError(f"unknown table {arg!r} (tables: {', '.join(sorted(tables)) or 'none'})")
    table = tables[arg]
    default = table.get("*")

    def lookup(value):
        if type(value) is str or type(value) is int:
            return table.get(value if type(value) is int else value.lower(), default)
        return default
    return lookup


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
    template: str
    fields: tuple[FieldRule, ...]
    tables: tuple[tuple[str, tuple[tuple[Any, Any], ...]], ...]

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
        tables = []
        if "tables" in top:
            raw = yaml.safe_load(text).get("tables") or {}
            if not isinstance(raw, dict):
                raise MappingError(f"{path}:{top['tables'].start_mark.line + 1}: 'tables' must map name -> table")
            for name, table in raw.items():
                if not isinstance(table, dict):
                    raise MappingError(f"{path}:{top['tables'].start_mark.line + 1}: table {name!r} is not a mapping")
                tables.append((name, tuple(_table_items(table))))
        template = top["template"].value if "template" in top else ""
        return EcsMapping(str(path), top["dataset"].value, top["original"].value, template,
                          tuple(rules), tuple(tables))


def _table_items(table: dict):
    """`{value: [key, ...]}` entries are inverted (compact groups); `{key: value}` kept; keys lowercased."""
    for key, value in table.items():
        if key == "*":
            yield key, value
        elif isinstance(value, list):
            for k in value:
                yield (k.lower() if isinstance(k, str) else k), key
        else:
            yield (key.lower() if isinstance(key, str) else key), value


def _path_getter(path: str) -> Getter:
    keys = tuple(path.split("."))
    if len(keys) == 1:
        key = keys[0]

        def get1(obj):
            return obj.get(key)
        return get1
    if len(keys) == 2:
        a, b = keys

        def get2(obj):
            v = obj.get(a)
            return v.get(b) if type(v) is dict else None
        return get2

    def get(obj):
        for k in keys:
            if type(obj) is not dict:
                return None
            obj = obj.get(k)
        return obj
    return get


def _output_field_getter(key: str) -> Getter:
    def get(obj):
        of = obj.get("output_fields")
        return of.get(key) if type(of) is dict else None
    return get


def _compile_source(expr: str, where: str) -> Getter:
    if expr.startswith("="):
        name = expr[1:]
        if name not in FUNCTIONS:
            raise MappingError(f"{where}: unknown function {name!r} (registered: {', '.join(sorted(FUNCTIONS))})")
        return FUNCTIONS[name]
    if expr.startswith("of:"):
        return _output_field_getter(expr[3:])
    if expr[0] in "'\"[{0123456789-" or expr in ("true", "false"):
        try:
            const = ast.literal_eval(expr) if expr not in ("true", "false") else expr == "true"
        except (ValueError, SyntaxError) as err:
            raise MappingError(f"{where}: bad constant {expr!r}: {err}") from err
        return lambda obj: const
    if not re.fullmatch(r"[A-Za-z_@][\w@-]*(\.[\w@-]+)*", expr):
        raise MappingError(f"{where}: {expr!r} is not a dotted path, of:key, =function or constant")
    return _path_getter(expr)


def _empty(value) -> bool:
    return value is None or value == "" or value == [] or value == {}


def compile_rule(rule: FieldRule, file: str, tables: dict | None = None) -> Getter:
    """One mapping line -> one getter returning a storable value, None (absent) or DROPPED."""
    where = f"{file}:{rule.line}: {rule.target}"
    tables = tables or {}
    source_part, *filter_parts = [p.strip() for p in rule.expr.split(" | ")]
    sources = [_compile_source(s.strip(), where) for s in source_part.split(" ?? ")]
    filters, typed = [], False
    for part in filter_parts:
        name, _, arg = part.partition(":")
        if name not in FILTERS:
            raise MappingError(f"{where}: unknown filter {name!r} (registered: {', '.join(sorted(FILTERS))})")
        try:
            filters.append(FILTERS[name](arg, tables))
        except KeyError as err:
            raise MappingError(f"{where}: {err.args[0]}") from None
        typed = FILTERS[name].typed
    if not typed:
        filters.append(keyword_guard)

    if len(sources) == 1:
        getter = sources[0]
    else:
        def getter(obj, _sources=tuple(sources)):
            for source in _sources:
                value = source(obj)
                if not _empty(value):
                    return value
            return None

    if len(filters) == 1:
        only = filters[0]

        def apply1(obj):
            value = getter(obj)
            return None if value is None else only(value)
        return apply1

    chain = tuple(filters)

    def apply(obj):
        value = getter(obj)
        for fn in chain:
            if value is None or value is DROPPED:
                return value
            value = fn(value)
        return value
    return apply


@dataclass(frozen=True)
class CompiledMapping:
    """A mapping compiled to one generated Python function (`apply`): record -> ECS fields.

    `rules` keeps one (target, getter) pair per line for introspection and tests; the hot path is
    `apply`, whose source (`source`) inlines every dict lookup and type guard so the per-event cost
    is a few dict operations per field, not a few Python calls per field.
    """
    dataset: str
    original: tuple[str, ...]
    rules: tuple[tuple[str, Getter], ...]
    check: "Callable[[Any], str | None]"
    apply: Callable[[dict], dict]
    source: str


_EMPTY: dict = {}


class _CodeGen:
    """Builds the source of `apply(r)` for one mapping; constants and callables go in `env`."""

    def __init__(self, where: str):
        self.where = where
        self.env: dict[str, Any] = {"_EMPTY": _EMPTY, "_DROPPED": DROPPED, "_KG": keyword_guard, "_add": _add}
        self.prelude: list[str] = []
        self.body: list[str] = []
        self.firsts: dict[str, str] = {}
        self.nodes: dict[tuple[str, ...], str] = {(): "doc"}
        self.leaves: set[tuple[str, ...]] = set()

    def name(self, prefix: str, value) -> str:
        key = f"{prefix}{len(self.env)}"
        self.env[key] = value
        return key

    def first(self, key: str) -> str:
        """A local holding record[key] when it is a dict (else an empty dict), read once per event."""
        if key not in self.firsts:
            var = self.firsts[key] = f"t{len(self.firsts)}"
            self.prelude += [f"    {var} = r.get({key!r})",
                             f"    if type({var}) is not dict: {var} = _EMPTY"]
        return self.firsts[key]

    def node(self, path: tuple[str, ...], line: int) -> str:
        if path in self.leaves:
            raise MappingError(f"{self.where}: {'.'.join(path)} is both a field and an object")
        if path not in self.nodes:
            self.node(path[:-1], line)
            self.nodes[path] = f"n{len(self.nodes)}"
        return self.nodes[path]

    def store(self, var: str, key: str, value: str, indent: str) -> list[str]:
        """Set var[key] = value; node dicts are made on first use (most nodes stay empty per event)."""
        if var == "doc":
            return [f"{indent}doc[{key!r}] = {value}"]
        return [f"{indent}if {var} is None: {var} = {{}}", f"{indent}{var}[{key!r}] = {value}"]

    def getter_code(self, expr: str, indent: str) -> list[str]:
        """Lines that leave the source's value (or None) in `v`."""
        expr = expr.strip()
        if expr.startswith("="):
            name = expr[1:]
            if name not in FUNCTIONS:
                raise MappingError(f"{self.where}: unknown function {name!r} "
                                   f"(registered: {', '.join(sorted(FUNCTIONS))})")
            return [f"{indent}v = {self.name('fn', FUNCTIONS[name])}(r)"]
        if expr.startswith("of:"):
            return [f"{indent}v = {self.first('output_fields')}.get({expr[3:]!r})"]
        if expr[0] in "'\"[{0123456789-" or expr in ("true", "false"):
            try:
                const = ast.literal_eval(expr) if expr not in ("true", "false") else expr == "true"
            except (ValueError, SyntaxError) as err:
                raise MappingError(f"{self.where}: bad constant {expr!r}: {err}") from err
            return [f"{indent}v = {self.name('c', const)}"]
        if not re.fullmatch(r"[A-Za-z_@][\w@-]*(\.[\w@-]+)*", expr):
            raise MappingError(f"{self.where}: {expr!r} is not a dotted path, of:key, =function or constant")
        keys = expr.split(".")
        if len(keys) == 1:
            return [f"{indent}v = r.get({keys[0]!r})"]
        lines = [f"{indent}v = {self.first(keys[0])}.get({keys[1]!r})"]
        for key in keys[2:]:
            lines.append(f"{indent}v = v.get({key!r}) if type(v) is dict else None")
        return lines


def _add(dropped: list | None, name: str) -> list:
    return [name] if dropped is None else dropped + [name]


def _constant(expr: str, where: str):
    """The value of a constant source, else None."""
    expr = expr.strip()
    if expr in ("true", "false"):
        return expr == "true"
    if expr and expr[0] in "'\"[{0123456789-":
        try:
            return ast.literal_eval(expr)
        except (ValueError, SyntaxError) as err:
            raise MappingError(f"{where}: bad constant {expr!r}: {err}") from err
    return None


def _chain(fns: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def run(value):
        for fn in fns:
            value = fn(value)
            if value is None or value is DROPPED:
                return value
        return value
    return run


def compile_mapping(mapping: EcsMapping) -> CompiledMapping:
    tables = {name: dict(items) for name, items in mapping.tables}
    gen = _CodeGen(mapping.file)
    dropped_node = ("kubehunt", "normalise")
    gen.node(dropped_node, 0)
    for rule in mapping.fields:
        gen.where = f"{mapping.file}:{rule.line}: {rule.target}"
        path = (rule.target,) if rule.target == "@timestamp" else tuple(rule.target.split("."))
        parent = gen.node(path[:-1], rule.line)
        if path in gen.nodes:
            raise MappingError(f"{gen.where}: {rule.target} is both a field and an object")
        gen.leaves.add(path)
        source_part, *filter_parts = [p.strip() for p in rule.expr.split(" | ")]
        filters, typed = [], False
        for part in filter_parts:
            fname, _, arg = part.partition(":")
            if fname not in FILTERS:
                raise MappingError(f"{gen.where}: unknown filter {fname!r} (registered: {', '.join(sorted(FILTERS))})")
            try:
                filters.append(FILTERS[fname](arg, tables))
            except KeyError as err:
                raise MappingError(f"{gen.where}: {err.args[0]}") from None
            typed = FILTERS[fname].typed
        sources = source_part.split(" ?? ")
        const = _constant(sources[0], gen.where) if len(sources) == 1 and not filters else None
        if const is not None:
            if keyword_guard(const) is DROPPED or _empty(const):
                raise MappingError(f"{gen.where}: the constant {const!r} cannot be stored in a plain field")
            gen.body += gen.store(parent, path[-1], gen.name('c', const), "    ")
            continue
        code = gen.getter_code(sources[0], "    ")
        for alt in sources[1:]:
            code.append("    if v is None or v == '' or v == []:")
            code += gen.getter_code(alt, "        ")
        drop = f"dropped = _add(dropped, {rule.target!r})"
        if filters:
            if not typed:
                filters.append(keyword_guard)
            fn = gen.name('f', filters[0] if len(filters) == 1 else _chain(filters))
            code += ["    if v is not None:",
                     f"        v = {fn}(v)",
                     f"        if v is _DROPPED: {drop}",
                     "        elif v is not None and v != '' and v != []:",
                     *gen.store(parent, path[-1], "v", "            ")]
        else:
            code += ["    if type(v) is str:",
                     "        if v:",
                     *gen.store(parent, path[-1], "v", "            "),
                     "    elif v is not None:",
                     "        v = _KG(v)",
                     f"        if v is _DROPPED: {drop}",
                     "        elif v != []:",
                     *gen.store(parent, path[-1], "v", "            ")]
        gen.body += code
    dropped_var = gen.nodes[dropped_node]
    lines = ["def apply(r):", "    dropped = None", "    doc = {}"]
    lines += [f"    {var} = None" for path, var in gen.nodes.items() if path]
    lines += gen.prelude + gen.body
    lines.append("    if dropped:")
    lines += gen.store(dropped_var, "dropped", "dropped", "        ")
    for path, var in sorted(gen.nodes.items(), key=lambda kv: -len(kv[0])):
        if path:
            lines.append(f"    if {var} is not None:")
            lines += gen.store(gen.nodes[path[:-1]], path[-1], var, "        ")
    lines.append("    return doc")
    source = "\n".join(lines) + "\n"
    namespace = dict(gen.env)
    exec(compile(source, f"<mapping {mapping.file}>", "exec"), namespace)  # noqa: S102 - our own generated code
    rules = tuple((r.target, compile_rule(r, mapping.file, tables)) for r in mapping.fields)
    check = compile_template_check(mapping.template, mapping.original) if mapping.template \
        else (lambda rec, deep=True: None)
    return CompiledMapping(mapping.dataset, tuple(mapping.original.split(".")), rules, check,
                           namespace["apply"], source)


@lru_cache(maxsize=None)
def load_mapping(source: str, directory: str | None = None) -> CompiledMapping:
    folder = Path(directory) if directory else mappings.path("ecs")
    return compile_mapping(EcsMapping.load(folder / MAPPING_FILES[source]))


# ---------------------------------------------------------------------------------------------
# The source namespace against its index template: reject, with the field and why, what the index
# would reject (measured on Elasticsearch 8.12: leaf fields refuse objects; object and flattened
# fields refuse scalars; boolean refuses anything but true/false; field names must be non-empty and
# not made of dots).

_LEAF, _OBJECT, _FLAT, _BOOL = "leaf", "object", "flattened", "boolean"


def _spec_from_properties(props: dict) -> dict:
    spec = {}
    for name, body in props.items():
        kind = body.get("type", "object")
        if kind == "object" or "properties" in body:
            spec[name] = (_OBJECT, _spec_from_properties(body.get("properties", {})))
        elif kind == "flattened":
            spec[name] = (_FLAT, None)
        elif kind == "boolean":
            spec[name] = (_BOOL, None)
        else:
            spec[name] = (_LEAF, None)
    return spec


def _bad_name(key) -> bool:
    return not key or "." in key or not key.strip()


def _nul_key_path(value, where: str) -> str | None:
    """Where a key holding NUL sits inside a flattened value (Elasticsearch reserves \\0 there)."""
    if type(value) is dict:
        for key, item in value.items():
            if "\x00" in key:
                return f"{where}[{key!r}]"
            if type(item) is dict or type(item) is list:
                found = _nul_key_path(item, f"{where}.{key}")
                if found:
                    return found
    elif type(value) is list:
        for item in value:
            found = _nul_key_path(item, where)
            if found:
                return found
    return None


def _check_object(value, spec: dict, where: str, deep: bool = True) -> str | None:
    if type(value) is list:
        for item in value:
            if item is not None and type(item) is not dict:
                return f"{where} is a list holding {type(item).__name__}s; the index maps it as an object"
            if item:
                reason = _check_object(item, spec, where, deep)
                if reason:
                    return reason
        return None
    if type(value) is not dict:
        return f"{where} is a {type(value).__name__}; the index maps it as an object"
    for key, item in value.items():
        if item is None:
            continue
        sub = spec.get(key)
        if sub is None:
            if _bad_name(key):
                return f"{where} has a field named {key!r}, which Elasticsearch cannot store"
            continue
        kind, inner = sub
        if kind is _LEAF:
            t = type(item)
            if t is dict or (t is list and _has_object(item)):
                return f"{where}.{key} is an object; the index maps it as a plain value"
        elif kind is _OBJECT:
            reason = _check_object(item, inner, f"{where}.{key}", deep)
            if reason:
                return reason
        elif kind is _FLAT:
            if type(item) is not dict and not (type(item) is list and all(type(i) is dict or i is None for i in item)):
                return f"{where}.{key} is a {type(item).__name__}; the index stores it as an object (flattened)"
            if deep:
                found = _nul_key_path(item, f"{where}.{key}")
                if found:
                    return f"{found} is a key with a NUL character, which a flattened field cannot store"
        elif kind is _BOOL:
            values = item if type(item) is list else (item,)
            if any(v is not None and type(v) is not bool and v not in ("true", "false") for v in values):
                return f"{where}.{key} is not true/false; the index maps it as boolean"
    return None


def _template_meta(template: str) -> dict:
    return json.loads(mappings.path("templates", "component", f"{template}.json").read_text()).get("_meta", {})


def template_properties(template: str) -> dict:
    """The `properties` of component template `template` (mappings/templates/component/<name>.json)."""
    body = json.loads(mappings.path("templates", "component", f"{template}.json").read_text())
    return body["template"]["mappings"]["properties"]


def compile_template_check(template: str, original: str) -> Callable[[Any], str | None]:
    props = template_properties(template)
    for key in original.split("."):
        props = props[key].get("properties", {})
    spec = _spec_from_properties(props)
    # Objects the index types only in part: the kubehunt-events ingest pipeline moves one that does
    # not fit aside (mappings/elastic.py), so here they take any object, as flattened fields do.
    for path in _template_meta(template).get("kubehunt_guarded", []):
        *parents, leaf = path[len(original) + 1:].split(".")
        node = spec
        for part in parents:
            node = node[part][1]
        node[leaf] = (_FLAT, None)

    def check(record, deep: bool = True) -> str | None:
        """`deep=False` skips the walk for NUL keys inside flattened values (the caller knows there is
        no NUL anywhere in the record: the walk is the only per-event cost that grows with its size)."""
        return _check_object(record, spec, original, deep)
    return check


# ---------------------------------------------------------------------------------------------
# Time helpers

_ISO = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?\s*([+-]\d\d:?\d\d|Z|z)?")


def parse_time(value: Any) -> str | None:
    """Any event time -> RFC 3339 UTC text with the source's own precision (up to ns).

    Accepts RFC 3339 text (any offset) and integer/float epoch in ns, µs, ms or s.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, (int, float)):
        n = int(value)
        if abs(n) >= 10**17:
            secs, frac, digits = n // 10**9, n % 10**9, 9
        elif abs(n) >= 10**14:
            secs, frac, digits = n // 10**6, n % 10**6, 6
        elif abs(n) >= 10**11:
            secs, frac, digits = n // 10**3, n % 10**3, 3
        else:
            secs, frac, digits = n, 0, 0
        base = _second_text(secs)
        if base is None:
            return None
        return f"{base}.{frac:0{digits}d}Z" if digits else f"{base}Z"
    if isinstance(value, str):
        text = value.strip()
        # Fast path for what API servers and Falco write: `2024-05-07T18:54:19.341081180Z`.
        if len(text) >= 20 and text[-1] == "Z" and text[10] == "T" and (len(text) == 20 or text[19] == "."):
            frac = text[20:-1]
            if (not frac or frac.isdigit()) and text[:19].isascii():
                try:
                    datetime.fromisoformat(text[:19])
                    return text
                except ValueError:
                    return None
        m = _ISO.fullmatch(text)
        if not m:
            return None
        date, clock, frac, offset = m.groups()
        try:
            dt = datetime.fromisoformat(f"{date}T{clock}")
        except ValueError:
            return None
        if offset in (None, "Z", "z", "+00:00", "+0000", "-00:00", "-0000"):
            return f"{date}T{clock}{frac or ''}Z"
        offset = offset if ":" in offset else offset[:3] + ":" + offset[3:]
        try:
            utc = datetime.fromisoformat(f"{date}T{clock}{offset}").astimezone(timezone.utc)
        except (ValueError, OverflowError):
            return None
        return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}{frac or ''}Z"
    return None


@lru_cache(maxsize=8192)
def _second_text(secs: int) -> str | None:
    """Epoch seconds -> `YYYY-MM-DDTHH:MM:SS` (cached: a stream's events share their seconds)."""
    try:
        return datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return None


def _storable_time(rfc3339: str) -> bool:
    """`@timestamp` is `date_nanos` (nanosecond precision is kept): 1970-01-01 .. 2262-04-11."""
    return "1970" <= rfc3339[:4] <= "2261" and rfc3339[4] == "-"


def to_epoch_ms(rfc3339: str) -> int:
    """RFC 3339 UTC text -> integer epoch milliseconds (Beam's timestamp precision)."""
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    secs = int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return secs * 1000 + int((frac + "000")[:3])


# ---------------------------------------------------------------------------------------------
# Audit functions

_IAM = {"clusterroles", "clusterrolebindings", "roles", "rolebindings", "serviceaccounts",
        "certificatesigningrequests", "subjectaccessreviews", "selfsubjectaccessreviews",
        "localsubjectaccessreviews", "selfsubjectrulesreviews"}
_AUTHN = {"tokenreviews", "selfsubjectreviews"}
_CONFIG = {"secrets", "configmaps", "pods", "deployments", "daemonsets", "statefulsets", "replicasets",
           "jobs", "cronjobs", "namespaces", "services", "networkpolicies", "validatingwebhookconfigurations",
           "mutatingwebhookconfigurations", "customresourcedefinitions", "nodes", "persistentvolumes",
           "persistentvolumeclaims", "ingresses", "podsecuritypolicies", "priorityclasses"}
_PROCESS_SUB = {"exec", "attach"}
_NETWORK_SUB = {"portforward", "proxy"}
_VERB_TYPE = {"create": "creation", "update": "change", "patch": "change", "delete": "deletion",
              "deletecollection": "deletion", "get": "access", "list": "access", "watch": "access",
              "impersonate": "admin", "escalate": "admin", "bind": "admin", "approve": "admin"}


def _ref(ev: dict) -> dict:
    ref = ev.get("objectRef")
    return ref if type(ref) is dict else {}


@ecs_function
def audit_timestamp(ev: dict):
    """requestReceivedTimestamp (v1), else the legacy v1beta1 `timestamp`, else stageTimestamp."""
    for key in ("requestReceivedTimestamp", "timestamp", "stageTimestamp"):
        value = ev.get(key)
        if value:
            text = parse_time(value) if type(value) is str else None
            if text:
                return text
    return None


@ecs_function
def audit_outcome(ev: dict):
    """The response code when there is one (an admission webhook can refuse an authorised request);
    else Elastic's rule: the authorization decision annotation."""
    status = ev.get("responseStatus")
    code = status.get("code") if type(status) is dict else None
    if type(code) is int and code > 0:
        return "success" if code < 400 else "failure"
    annotations = ev.get("annotations")
    if type(annotations) is dict:
        decision = annotations.get("authorization.k8s.io/decision")
        if decision == "allow":
            return "success"
        if decision == "forbid":
            return "failure"
    return None


@ecs_function
def audit_category(ev: dict):
    ref = _ref(ev)
    resource, sub = ref.get("resource"), ref.get("subresource")
    if sub in _PROCESS_SUB:
        return ["api", "process"]
    if sub in _NETWORK_SUB:
        return ["api", "network"]
    if resource in _IAM or (resource == "serviceaccounts" and sub == "token"):
        return ["api", "iam"]
    if resource in _AUTHN:
        return ["api", "authentication"]
    if resource in _CONFIG:
        return ["api", "configuration"]
    return ["api"]


@ecs_function
def audit_type(ev: dict):
    ref = _ref(ev)
    verb = ev.get("verb")
    if ref.get("subresource") in _PROCESS_SUB and verb in ("create", "get"):
        types = ["start"]
    else:
        verb_type = _VERB_TYPE.get(verb) if type(verb) is str else None
        types = [verb_type] if verb_type else []
    annotations = ev.get("annotations")
    decision = annotations.get("authorization.k8s.io/decision") if type(annotations) is dict else None
    if decision == "allow":
        types.append("allowed")
    elif decision == "forbid":
        types.append("denied")
    return types or ["info"]


@ecs_function
def audit_resource_name(ev: dict):
    name = _ref(ev).get("name")
    if name:
        return name
    # Pods created through generateName have no name in the request; the response carries it.
    resp = ev.get("responseObject")
    meta = resp.get("metadata") if type(resp) is dict else None
    name = meta.get("name") if type(meta) is dict else None
    if name:
        return name
    # GKE records name non-resource URLs (readyz, /version) only in resourceName.
    proto = ev.get("protoPayload")
    return proto.get("resourceName") if type(proto) is dict and not ev.get("objectRef") else None


def _exec_query(ev: dict) -> dict | None:
    if _ref(ev).get("subresource") not in _PROCESS_SUB:
        return None
    uri = ev.get("requestURI")
    if type(uri) is not str or "?" not in uri:
        return None
    return parse_qs(urlsplit(uri).query)


@ecs_function
def audit_exec_args(ev: dict):
    """`?command=sh&command=-c&command=id` -> ["sh", "-c", "id"] (URL-decoded)."""
    query = _exec_query(ev)
    return (query or {}).get("command")


@ecs_function
def audit_exec_command(ev: dict):
    args = audit_exec_args(ev)
    if not args:
        return None
    # Quote arguments with spaces so `sh -c "cat /etc/shadow"` reads as typed.
    return " ".join(a if a and not any(c.isspace() for c in a) else '"' + a.replace('"', '\\"') + '"'
                    for a in args)


@ecs_function
def audit_exec_container(ev: dict):
    query = _exec_query(ev)
    containers = (query or {}).get("container")
    return containers[0] if containers else None


@ecs_function
def audit_process_name(ev: dict):
    args = audit_exec_args(ev)
    return args[0].rsplit("/", 1)[-1] if args and args[0] else None


@ecs_function
def audit_related_user(ev: dict):
    out = []
    for block in (ev.get("user"), ev.get("impersonatedUser")):
        if type(block) is dict:
            for key in ("uid", "username"):
                value = block.get(key)
                if type(value) is str and value and value not in out:
                    out.append(value)
    return out


def _extra(ev: dict, key: str):
    user = ev.get("user")
    extra = user.get("extra") if type(user) is dict else None
    value = extra.get(key) if type(extra) is dict else None
    if type(value) is list:
        value = value[0] if len(value) == 1 else (value or None)
    return value


@ecs_function
def audit_caller_pod_name(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/pod-name")


@ecs_function
def audit_caller_pod_uid(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/pod-uid")


@ecs_function
def audit_caller_node_name(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/node-name")


@ecs_function
def audit_caller_credential_id(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/credential-id")


def _service_account(ev: dict, block: str):
    user = ev.get(block)
    name = user.get("username") if type(user) is dict else None
    if type(name) is str and name.startswith("system:serviceaccount:"):
        parts = name.split(":")
        if len(parts) == 4 and parts[2] and parts[3]:
            return parts[2], parts[3]
    return None


@ecs_function
def audit_caller_sa_namespace(ev: dict):
    sa = _service_account(ev, "user")
    return sa[0] if sa else None


@ecs_function
def audit_caller_sa_name(ev: dict):
    sa = _service_account(ev, "user")
    return sa[1] if sa else None


@ecs_function
def audit_pod_images(ev: dict):
    """Container images of a pod create/update (requestObject.spec), for image allow-list hunts."""
    if _ref(ev).get("resource") != "pods" or _ref(ev).get("subresource"):
        return None
    obj = ev.get("requestObject")
    spec = obj.get("spec") if type(obj) is dict else None
    if type(spec) is not dict:
        return None
    images = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        containers = spec.get(key)
        if type(containers) is list:
            for c in containers:
                image = c.get("image") if type(c) is dict else None
                if type(image) is str and image not in images:
                    images.append(image)
    return images or None


# ---------------------------------------------------------------------------------------------
# GKE Cloud Logging records (protoPayload) -> an audit Event view

_GRPC_TO_HTTP = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400,
                 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}


def _gke_object_ref(resource_name: str) -> dict | None:
    """`core/v1/namespaces/default/pods/web-1/exec` -> objectRef; None for non-resource URLs."""
    parts = resource_name.split("/")
    if len(parts) < 3 or not re.fullmatch(r"v\d+\w*", parts[1]):
        return None
    group, version, rest = parts[0], parts[1], parts[2:]
    ref = {"apiGroup": "" if group == "core" else group, "apiVersion": version}
    if rest[0] == "namespaces" and len(rest) >= 3:
        ref["namespace"] = rest[1]
        rest = rest[2:]
    ref["resource"] = rest[0]
    if len(rest) > 1:
        ref["name"] = rest[1]
    if len(rest) > 2:
        ref["subresource"] = rest[2]
    return ref


def gke_to_event(record: dict) -> dict:
    """A GKE Cloud Logging audit record -> the same record plus the audit Event fields hunts read.

    Every original key stays (protoPayload, resource, labels, timestamp, receiveTimestamp ...); the
    Event fields are derived from protoPayload: verb from methodName, objectRef from resourceName,
    user from authenticationInfo, sourceIPs/userAgent from requestMetadata, request/response
    objects, the gRPC status as an HTTP code, labels as annotations, insertId as auditID.
    """
    proto = record.get("protoPayload")
    if type(proto) is not dict:
        raise NormaliseError("GKE record has no protoPayload object")
    ev = dict(record)
    method = proto.get("methodName")
    if type(method) is str and method:
        ev["verb"] = method.rsplit(".", 1)[-1]
    resource_name = proto.get("resourceName")
    if type(resource_name) is str:
        ref = _gke_object_ref(resource_name)
        if ref:
            ev["objectRef"] = ref
        else:
            ev["requestURI"] = "/" + resource_name.lstrip("/")
    auth = proto.get("authenticationInfo")
    principal = auth.get("principalEmail") if type(auth) is dict else None
    if type(principal) is str:
        ev["user"] = {"username": principal}
    meta = proto.get("requestMetadata")
    if type(meta) is dict:
        if type(meta.get("callerIp")) is str:
            ev["sourceIPs"] = [meta["callerIp"]]
        if type(meta.get("callerSuppliedUserAgent")) is str:
            ev["userAgent"] = meta["callerSuppliedUserAgent"]
    if type(proto.get("request")) is dict:
        ev["requestObject"] = proto["request"]
    if type(proto.get("response")) is dict:
        ev["responseObject"] = proto["response"]
    status = proto.get("status")
    if type(status) is dict:
        code = status.get("code", 0)
        response = {"code": _GRPC_TO_HTTP.get(code, 500) if type(code) is int else 500}
        if type(status.get("message")) is str:
            response["message"] = status["message"]
        ev["responseStatus"] = response
    if "auditID" not in ev:
        audit_id = record.get("insertId") or (record.get("operation") or {}).get("id")
        if audit_id:
            ev["auditID"] = audit_id
    if type(record.get("timestamp")) is str:
        ev.setdefault("requestReceivedTimestamp", record["timestamp"])
        ev.setdefault("stageTimestamp", record["timestamp"])
    if type(record.get("labels")) is dict and "annotations" not in ev:
        ev["annotations"] = record["labels"]
    return ev


# ---------------------------------------------------------------------------------------------
# Falco functions

_TECHNIQUE = re.compile(r"^(T\d{4})(\.\d{3})?$")


def _of(ev: dict, key: str):
    of = ev.get("output_fields")
    return of.get(key) if type(of) is dict else None


def _tags(ev: dict) -> list:
    tags = ev.get("tags")
    return tags if type(tags) is list else []


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
        if type(ip) is str and ip not in out and _valid_ip(ip):
            out.append(ip)
    return out or None


@ecs_function
def falco_time_ns(ev: dict):
    """The alert's own time as integer epoch nanoseconds, when Falco gave it that precisely."""
    for value in (_of(ev, "evt.time.iso8601"), _of(ev, "evt.time"), _of(ev, "evt_time")):
        if type(value) is int and value >= 10**17:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# Identity and assembly


def _digest(data: bytes) -> str:
    # 96 bits of SHA-256: measured faster here than blake2b on ~2-3 KB events (SHA extensions).
    return hashlib.sha256(data).hexdigest()[:24]


def _id_part(value, default: str) -> str:
    text = value if type(value) is str and value else default
    return text if len(text) <= _MAX_ID_PART else _digest(text.encode())


def event_id(source: str, record: dict) -> str:
    """Deterministic document id.

    audit: auditID + stage + a digest of the whole record, so a re-shipped identical event dedupes
    while two different events that reuse an auditID + stage (Elastic's own samples do) stay apart.
    falco: Falco's `uuid` when present, else a digest of the whole alert.
    Digests are taken over the record re-serialised with sorted keys, so the same event shipped in an
    EventList, an AKS wrapper or on its own gets the same id. Over-long client ids are digested
    (Elasticsearch ids are at most 512 bytes).
    """
    return _event_id(source, record)[0]


def _event_id(source: str, record: dict) -> tuple[str, bytes | None]:
    """(id, the canonical bytes when they were made)."""
    if source == AUDIT:
        canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        audit_id = record.get("auditID") or record.get("insertId")
        stage = record.get("stage")
        return f"{_id_part(audit_id, 'none')}-{_id_part(stage, 'none')[:16]}-{_digest(canonical)}", canonical
    uuid = record.get("uuid")
    if type(uuid) is str and uuid:
        return _id_part(uuid, ""), None
    canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return f"falco-{_digest(canonical)}", canonical


class Normaliser:
    """Compiled mappings for both sources; `to_ecs` turns one record into one ECS document."""

    def __init__(self, mapping_dir: str | None = None):
        self._maps = {source: load_mapping(source, mapping_dir) for source in (AUDIT, FALCO)}

    def to_ecs(self, source: str, record: dict, envelope: str = "") -> dict:
        mapping = self._maps[source]
        if type(record) is not dict:
            raise NormaliseError(f"{source} record is a {type(record).__name__}, not an object")
        if source == AUDIT:
            ident, canonical = _event_id(AUDIT, record)
            if envelope == "gke":
                record = gke_to_event(record)
            view = record
            meta = getattr(envelope, "meta", None)
            if meta:
                # Elastic keeps the AKS wrapper's fields next to the Event; a shallow copy, so the
                # caller's record is not touched.
                view = {**record, "aks_metadata": meta}
        else:
            ident, canonical = _event_id(FALCO, record)
            view = record
        # orjson writes NUL as \u0000: when the serialised record has none, no key has one.
        reason = mapping.check(view, canonical is None or b"\\u0000" in canonical)
        if reason:
            raise NormaliseError(reason)
        doc = mapping.apply(record)
        ts = doc.get("@timestamp")
        if ts is None:
            raise NormaliseError(f"{source} record has no usable event time")
        if not _storable_time(ts):
            raise NormaliseError(f"{source} event time {ts} is outside 1970..2261 (stored at nanosecond precision)")
        event = doc.setdefault("event", {})
        event["dataset"] = mapping.dataset
        event["id"] = ident
        node = doc
        for key in mapping.original[:-1]:
            node = node.setdefault(key, {})
        node[mapping.original[-1]] = view
        return doc


# ---------------------------------------------------------------------------------------------
# The ECS component template, generated from mappings/ecs/ecs-fields.yaml

ECS_COMPONENT = "kubehunt-ecs"


def ecs_field_types(directory: str | None = None) -> dict[str, str]:
    folder = Path(directory) if directory else mappings.path("ecs")
    return yaml.safe_load((folder / "ecs-fields.yaml").read_text())


def _es_field(kind: str) -> dict:
    body: dict = {"type": kind}
    if kind == "keyword":
        body["ignore_above"] = 1024
    elif kind in ("long", "ip", "date", "date_nanos"):
        body["ignore_malformed"] = True
    return body


def ecs_component_template(field_types: dict[str, str] | None = None) -> dict:
    """Component template body (for `put_component_template`) typing every emitted ECS field."""
    props: dict = {}
    for field, kind in sorted((field_types or ecs_field_types()).items()):
        node = props
        *parents, leaf = field.split(".") if field != "@timestamp" else ["@timestamp"]
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = _es_field(kind)
    # @timestamp is the data stream's time field: it must always parse.
    props["@timestamp"].pop("ignore_malformed", None)
    return {
        "template": {
            "mappings": {
                "dynamic_templates": [
                    {"strings_as_keyword": {"match_mapping_type": "string",
                                            "mapping": {"type": "keyword", "ignore_above": 1024}}},
                ],
                "properties": props,
            },
        },
        "_meta": {"description": "ECS fields emitted by kubehunt's normaliser; generated from "
                                 "mappings/ecs/ecs-fields.yaml by `python -m transforms.ecs --write-template`",
                  "managed_by": "kubehunt"},
    }


def render_template(body: dict) -> str:
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write-template"]:
        sys.exit("usage: python -m transforms.ecs --write-template")
    out = mappings.path("templates", "component", f"{ECS_COMPONENT}.json")
    out.write_text(render_template(ecs_component_template()))
    print(f"wrote {out}")
