"""The one walk of a hunt's match expression for the rule exporters (``lucene``, ``sigma``).

``Walk`` reads the expression's tree: its boolean structure, comparisons of a field with constants,
the functions (``exists``, ``startswith``, ...), ``any()`` over a list of fields or an object array,
and ``setting()`` lists resolved to constants. For each condition it asks an ``Emitter`` for that
target's text; ``transforms.hunts.lucene`` and ``transforms.hunts.sigma`` are the two emitters.
What no target can express faithfully raises ``Untranslatable`` here (``lower()``, ``len()``, a
field compared with a field, AND or NOT on one element of an object array: Elasticsearch flattens
object arrays); what one target cannot, in its emitter (``matches()`` in Lucene).
"""
from __future__ import annotations

import ast
from typing import Mapping, Sequence

from transforms.hunts.expression import _Compiler, parse_expression

_ORDER = {ast.Lt: "lt", ast.LtE: "lte", ast.Gt: "gt", ast.GtE: "gte"}


class Untranslatable(ValueError):
    """The hunt uses a construct the target cannot express faithfully; the message names it."""


class Emitter:
    """A target's text for each condition ``Walk`` finds. Fields are paths (tuples of names)."""

    NAME = ""           # in "... is not a condition NAME can express"
    EQUIVALENT = ""     # in "`f()` has no EQUIVALENT"
    AND = OR = ""

    def all_of(self, parts: Sequence[str]) -> str:
        return "(" + self.AND.join(parts) + ")"

    def any_of(self, parts: Sequence[str]) -> str:
        return "(" + self.OR.join(parts) + ")"

    def negate(self, query: str) -> str:
        raise NotImplementedError

    def never(self, negated: bool = False) -> str:
        """What never holds (``f in ()``, ``service_account_in(f, ())``); negated: what always does."""
        raise NotImplementedError

    def equals(self, field: tuple[str, ...], value) -> str:
        raise NotImplementedError

    def one_of(self, field: tuple[str, ...], values: tuple) -> str:
        raise NotImplementedError

    def contains(self, field: tuple[str, ...], value) -> str:
        """The list field holds `value` (``'x' in f``)."""
        raise NotImplementedError

    def order(self, field: tuple[str, ...], op: str, value) -> str:
        """``op``: lt, lte, gt, gte; `value` a number."""
        raise NotImplementedError

    def exists(self, field: tuple[str, ...]) -> str:
        raise NotImplementedError

    def affix(self, field: tuple[str, ...], kind: str, values: tuple) -> str:
        """``kind``: startswith or endswith, any of `values`."""
        raise NotImplementedError

    def regex(self, field: tuple[str, ...], pattern: str) -> str:
        raise Untranslatable(f"`matches()` has no {self.EQUIVALENT}")

    def service_account(self, field: tuple[str, ...]) -> str:
        raise NotImplementedError

    def service_account_in(self, field: tuple[str, ...], names: tuple) -> str:
        """Namespace or name is one of `names`, or the name starts with `<name>-` (non-empty)."""
        raise NotImplementedError


class Walk:
    """Walks a parsed match expression, building the target's text with `emit`."""

    def __init__(self, emit: Emitter, lists: Mapping[str, tuple]):
        self.emit = emit
        self.compiler = _Compiler("lucene", lists)
        self.bindings: dict[str, tuple[str, ...]] = {}

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
            parts = [self.expr(v) for v in node.values]
            return self.emit.all_of(parts) if isinstance(node.op, ast.And) else self.emit.any_of(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.emit.negate(self.expr(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node)
        raise Untranslatable(f"`{ast.unparse(node)}` is not a condition {self.emit.NAME} can express")

    def compare(self, node) -> str:
        op, right = node.ops[0], node.comparators[0]
        left = self.path(node.left)
        if isinstance(op, (ast.In, ast.NotIn)):
            if left is not None:
                values = self.constants(right)
                if values is None:
                    raise Untranslatable(f"`{ast.unparse(node)}`: membership in a non-constant")
                if not values:   # `in ()` never holds, `not in ()` always does
                    return self.emit.never(negated=isinstance(op, ast.NotIn))
                query = self.emit.one_of(left, values)
            else:   # 'x' in list_field
                container = self.path(right)
                if container is None or not isinstance(node.left, ast.Constant):
                    raise Untranslatable(f"`{ast.unparse(node)}`")
                query = self.emit.contains(container, node.left.value)
            return query if isinstance(op, ast.In) else self.emit.negate(query)
        if left is None or not isinstance(right, ast.Constant):
            raise Untranslatable(f"`{ast.unparse(node)}`: only field-to-constant comparisons")
        value = right.value
        if isinstance(op, ast.Eq):
            return self.emit.equals(left, value)
        if isinstance(op, ast.NotEq):
            return self.emit.negate(self.emit.equals(left, value))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Untranslatable(f"`{ast.unparse(node)}`: ordering on a non-number")
        return self.emit.order(left, _ORDER[type(op)], value)

    def call(self, node) -> str:
        name = node.func.id
        if name == "any":
            return self.any(node)
        args = node.args
        field = self.path(args[0]) if args else None
        if name == "exists" and field:
            return self.emit.exists(field)
        if name == "matches" and field:
            return self.emit.regex(field, args[1].value)
        if name in ("startswith", "endswith") and field and len(args) == 2:
            values = self.constants(args[1])
            if values is None and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
                values = (args[1].value,)
            if values is None:
                raise Untranslatable(f"`{ast.unparse(node)}`: non-constant affix")
            return self.emit.affix(field, name, values)
        if name == "is_service_account" and field:
            return self.emit.service_account(field)
        if name == "service_account_in" and field and len(args) == 2:
            names = self.constants(args[1])
            if names is None:
                raise Untranslatable(f"`{ast.unparse(node)}`: non-constant names")
            return self.emit.service_account_in(field, names) if names else self.emit.never()
        raise Untranslatable(f"`{name}()` has no {self.emit.EQUIVALENT}")

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
            return self.emit.any_of(out)
        base = self.path(comp.iter)
        if base is None:
            raise Untranslatable(f"any() over `{ast.unparse(comp.iter)}`")
        atoms = _or_atoms(gen.elt)
        if atoms is None:
            raise Untranslatable(f"`{ast.unparse(node)}`: AND/NOT on one element of an object array "
                                 "(Elasticsearch flattens object arrays)")
        self.bindings[var] = base
        try:
            return self.emit.any_of([self.expr(a) for a in atoms])
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


def walk(emit: Emitter, match: str, lists: Mapping[str, tuple], where: str = "") -> str:
    """The target's text for a match expression (``Untranslatable`` when it cannot be faithful)."""
    return Walk(emit, lists).expr(parse_expression(match, where))
