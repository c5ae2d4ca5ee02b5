"""Translate a hunt's match expression into a Lucene query (Elasticsearch `query_string` syntax).

Used by `kubehunt rules export` so a hunt runs as an Elastic Security rule on data kubehunt never
tagged: the query carries the hunt's own logic over the ECS / `kubernetes.audit.*` fields, never
`kubehunt.hunts`. A construct with no faithful Lucene equivalent raises ``Untranslatable`` naming it
(the export reports that hunt instead of writing a query that selects other documents):

- ``matches()`` (Python regular expressions are not Lucene's, and flattened fields take no regexp);
- ``all()``, ``len()``, ``lower()``;
- ``any()`` over a list of objects whose condition ANDs or negates conditions on the element: Elasticsearch
  flattens object arrays, so only OR-combinations of single conditions survive (``any(a or b)`` is
  ``any(a) or any(b)``; ``any(a and b)`` is not ``any(a) and any(b)``).

Semantics kept: a missing field never equals, orders or belongs (``NOT f:x`` matches a missing ``f``,
as ``f != x`` does here); ``x == True`` is the term ``true``. One approximation, reported in
``notes``: inside a ``flattened`` field (the audit event's requestObject, annotations, ...) every
value is a keyword, so ``== True`` also matches the *string* "true" there, which the hunt does not.
"""
from __future__ import annotations

import ast
from typing import Mapping

from transforms.hunts.expression import _Compiler, parse_expression

_SPECIAL = set('+-=&|><!(){}[]^"~*?:\\/ ')


class Untranslatable(ValueError):
    """The hunt uses a construct Lucene cannot express faithfully; the message names it."""


def escape_term(text: str) -> str:
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in text)


def _field(parts: tuple[str, ...]) -> str:
    return escape_term(".".join(parts))


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise Untranslatable(f"constant {value!r}")


def _not(query: str) -> str:
    # A purely negative clause inside a boolean query matches nothing in Lucene: anchor it.
    return f"(*:* AND NOT {query})"


class _Translator:
    OR = " OR "

    def __init__(self, lists: Mapping[str, tuple], flattened: tuple[str, ...] = ()):
        self.compiler = _Compiler("lucene", lists)
        self.bindings: dict[str, tuple[str, ...]] = {}
        self.flattened = flattened
        self.notes: list[str] = []

    def note_boolean(self, path: tuple[str, ...], value) -> None:
        dotted = ".".join(path)
        if isinstance(value, bool):
            # Elasticsearch indexes the string "true" as true either way: a boolean field coerces it,
            # a flattened field keeps every value as a keyword. The hunt itself tells them apart.
            kind = "a flattened field" if any(dotted.startswith(f + ".") for f in self.flattened) \
                else "a boolean field (it coerces strings)"
            self.notes.append(f"{dotted} == {value}: {kind}, so the string {str(value).lower()!r} matches too")

    def path(self, node) -> tuple[str, ...] | None:
        parts = self.compiler.path_of(node)
        if parts is None:
            return None
        if parts[0] in self.bindings:
            return self.bindings[parts[0]] + parts[1:]
        return parts

    def constants(self, node) -> tuple | None:
        return self.compiler.constant(node)

    def expr(self, node) -> str:
        if isinstance(node, ast.BoolOp):
            joiner = " AND " if isinstance(node.op, ast.And) else " OR "
            return "(" + joiner.join(self.expr(v) for v in node.values) + ")"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return _not(self.expr(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node)
        raise Untranslatable(f"`{ast.unparse(node)}` is not a condition Lucene can express")

    def compare(self, node) -> str:
        op, right = node.ops[0], node.comparators[0]
        left_path = self.path(node.left)
        if isinstance(op, (ast.In, ast.NotIn)):
            if left_path is not None:
                values = self.constants(right)
                if values is None:
                    raise Untranslatable(f"`{ast.unparse(node)}`: membership in a non-constant")
                if not values:   # `in ()` never holds, `not in ()` always does
                    return "(NOT *:*)" if isinstance(op, ast.In) else "*:*"
                else:
                    query = f"{_field(left_path)}:(" + " OR ".join(_value(v) for v in values) + ")"
            else:   # 'x' in list_field
                container = self.path(right)
                if container is None or not isinstance(node.left, ast.Constant):
                    raise Untranslatable(f"`{ast.unparse(node)}`")
                query = f"{_field(container)}:{_value(node.left.value)}"
            return query if isinstance(op, ast.In) else _not(query)
        if left_path is None or not isinstance(right, ast.Constant):
            raise Untranslatable(f"`{ast.unparse(node)}`: only field-to-constant comparisons")
        field, value = _field(left_path), right.value
        self.note_boolean(left_path, value)
        if isinstance(op, ast.Eq):
            return f"{field}:{_value(value)}"
        if isinstance(op, ast.NotEq):
            return _not(f"{field}:{_value(value)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Untranslatable(f"`{ast.unparse(node)}`: ordering on a non-number")
        symbol = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}[type(op)]
        return f"{field}:{symbol}{_value(value)}"

    def call(self, node) -> str:
        name = node.func.id
        if name == "any":
            return self.any(node)
        args = node.args
        field = self.path(args[0]) if args else None
        if name == "exists" and field:
            return f"_exists_:{_field(field)}"
        if name in ("startswith", "endswith") and field and len(args) == 2:
            values = self.constants(args[1])
            values = values if values is not None else (
                (args[1].value,) if isinstance(args[1], ast.Constant) and isinstance(args[1].value, str) else None)
            if values is None:
                raise Untranslatable(f"`{ast.unparse(node)}`: non-constant affix")
            pattern = "{}*" if name == "startswith" else "*{}"
            return "(" + " OR ".join(f"{_field(field)}:{pattern.format(escape_term(v))}" for v in values) + ")"
        if name == "is_service_account" and field:
            return f"{_field(field)}:system\\:serviceaccount\\:*"
        if name == "service_account_in" and field and len(args) == 2:
            names = self.constants(args[1])
            if names is None:
                raise Untranslatable(f"`{ast.unparse(node)}`: non-constant names")
            if not names:
                return "(NOT *:*)"
            f, prefix = _field(field), "system\\:serviceaccount\\:"
            clauses = []
            for entry in names:
                e = escape_term(entry)
                # namespace == entry, name == entry, or name starts with `entry-`
                clauses += [f"{f}:{prefix}{e}\\:*", f"{f}:{prefix}*\\:{e}", f"{f}:{prefix}*\\:{e}\\-*"]
            return "(" + " OR ".join(clauses) + ")"
        raise Untranslatable(f"`{name}()` has no faithful Lucene equivalent")

    def any(self, node) -> str:
        gen = node.args[0]
        comp = gen.generators[0]
        var = comp.target.id
        if comp.ifs:
            raise Untranslatable("any(... if ...) (a filter on the element)")
        if isinstance(comp.iter, (ast.List, ast.Tuple)):
            # any(EXPR for u in [path1, path2]): EXPR for each path, ORed.
            out = []
            for element in comp.iter.elts:
                path = self.path(element)
                if path is None:
                    raise Untranslatable(f"any() over `{ast.unparse(element)}`")
                self.bindings[var] = path
                try:
                    out.append(self.expr(gen.elt))
                finally:
                    del self.bindings[var]
            return "(" + self.OR.join(out) + ")"
        base = self.path(comp.iter)
        if base is None:
            raise Untranslatable(f"any() over `{ast.unparse(comp.iter)}`")
        atoms = _or_atoms(gen.elt)
        if atoms is None:
            raise Untranslatable(f"`{ast.unparse(node)}`: AND/NOT on one element of an object array "
                                 "(Elasticsearch flattens object arrays)")
        self.bindings[var] = base
        try:
            return "(" + self.OR.join(self.expr(a) for a in atoms) + ")"
        finally:
            del self.bindings[var]


def _or_atoms(node) -> list | None:
    """The OR-ed single conditions of `node`, or None if it ANDs or negates."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        out = []
        for value in node.values:
            atoms = _or_atoms(value)
            if atoms is None:
                return None
            out += atoms
        return out
    if isinstance(node, ast.BoolOp) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return None
    if isinstance(node, ast.Compare) and isinstance(node.ops[0], (ast.NotIn, ast.NotEq)):
        return None
    return [node]


def translate(match: str, lists: Mapping[str, tuple], where: str = "",
              flattened: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """(Lucene query, approximation notes) for a match expression; ``Untranslatable`` when it cannot
    be faithful. `flattened`: the dotted paths the index maps as `flattened`."""
    translator = _Translator(lists, flattened)
    return translator.expr(parse_expression(match, where)), translator.notes


def to_lucene(match: str, lists: Mapping[str, tuple], where: str = "") -> str:
    return translate(match, lists, where)[0]
