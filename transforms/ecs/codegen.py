"""THE mapping compiler: an `EcsMapping` -> one generated Python function `apply(record) -> ECS fields`.

Each mapping line becomes a few inlined statements: the source's dict lookups (a record's top-level
objects are read once per event into locals), `??` alternatives, the line's filters (registered
callables bound into the function's namespace) and a type guard; nested ECS objects are built only
when one of their fields gets a value. `CompiledMapping.source` is the generated text (pinned by
tests/test_ecs_codegen.py), so what runs can be read.

Semantics (docs/ecs.md): `a ?? b` takes the first source that has a value; None, "", [] and {} have
none. A value a guard refuses (DROPPED) leaves the field out and names it in
`kubehunt.normalise.dropped`. A constant source must be storable as it is (checked at compile time).
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import mappings
from transforms.ecs.errors import DROPPED, MappingError
from transforms.ecs.filters import FILTERS, FUNCTIONS, keyword_guard
from transforms.ecs.model import EcsMapping
from transforms.ecs.storable import compile_template_check
from transforms.sources import source as _source


@dataclass(frozen=True)
class CompiledMapping:
    """A mapping compiled to one generated Python function (`apply`): record -> ECS fields.

    `source` is the text of `apply`; `rules` lists (target, mapping file line) per mapped field;
    `check` is the storability check of the source namespace against its index template.
    """
    dataset: str
    original: tuple[str, ...]
    rules: tuple[tuple[str, int], ...]
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


def _empty(value) -> bool:
    """No value for `??` and for a constant: None, "", [] and {}."""
    return value is None or value == "" or value == [] or value == {}


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
    # Lines with the same source and filters are computed once per event (see `shared` below).
    parsed = [[p.strip() for p in rule.expr.split(" | ")] for rule in mapping.fields]
    repeats = Counter((source_part, tuple(filter_parts)) for source_part, *filter_parts in parsed)
    shared: dict[tuple, str] = {}
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
        drop = f"dropped = _add(dropped, {rule.target!r})"
        key = (source_part, tuple(filter_parts))
        if filters and key in shared:
            # The same source and filters as an earlier line (source.ip, client.ip, related.ip): reuse
            # that line's filtered value; a list is copied so each field owns its value as before.
            var = shared[key]
            gen.body += [f"    v = {var}[:] if type({var}) is list else {var}",
                         f"    if v is _DROPPED: {drop}",
                         "    elif v is not None and v != '' and v != []:",
                         *gen.store(parent, path[-1], "v", "        ")]
            continue
        code = gen.getter_code(sources[0], "    ")
        for alt in sources[1:]:
            code.append("    if v is None or v == '' or v == [] or v == {}:")
            code += gen.getter_code(alt, "        ")
        if filters:
            if not typed:
                filters.append(keyword_guard)
            fn = gen.name('f', filters[0] if len(filters) == 1 else _chain(filters))
            if repeats[key] > 1:
                var = shared[key] = f"e{len(shared)}"
                code += ["    if v is not None:",
                         f"        v = {fn}(v)",
                         f"    {var} = v",
                         f"    if v is _DROPPED: {drop}",
                         "    elif v is not None and v != '' and v != []:",
                         *gen.store(parent, path[-1], "v", "        ")]
            else:
                code += ["    if v is not None:",
                         f"        v = {fn}(v)",
                         f"        if v is _DROPPED: {drop}",
                         "        elif v is not None and v != '' and v != []:",
                         *gen.store(parent, path[-1], "v", "            ")]
        else:
            # Most mapped fields are absent from most records: test for None first.
            code += ["    if v is not None:",
                     "        if type(v) is str:",
                     "            if v:",
                     *gen.store(parent, path[-1], "v", "                "),
                     "        else:",
                     "            v = _KG(v)",
                     f"            if v is _DROPPED: {drop}",
                     "            elif v != []:",
                     *gen.store(parent, path[-1], "v", "                ")]
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
    rules = tuple((r.target, r.line) for r in mapping.fields)
    check = compile_template_check(mapping.template, mapping.original) if mapping.template \
        else (lambda rec, deep=True: None)
    return CompiledMapping(mapping.dataset, tuple(mapping.original.split(".")), rules, check,
                           namespace["apply"], source)


@lru_cache(maxsize=None)
def load_mapping(source: str, directory: str | None = None) -> CompiledMapping:
    """The compiled mapping of source `source` (`audit`, `falco`), from `directory` or mappings/ecs."""
    folder = Path(directory) if directory else mappings.path("ecs")
    return compile_mapping(EcsMapping.load(folder / _source(source).mapping_file))
