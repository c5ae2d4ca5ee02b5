"""Translate a hunt into a Sigma rule (https://sigmahq.io): detection selections and a condition.

Each condition of the match expression becomes one selection (``sel1: {field|modifier: values}``) and
the boolean structure becomes the Sigma ``condition`` (``sel1 and (sel2 or not sel3)``). Sigma has
regular expressions (``|re``), so ``matches()`` translates here; the rest of the limits are those of
``transforms.hunts.lucene`` (object arrays are flattened by SIEMs too) and raise ``Untranslatable``.
"""
from __future__ import annotations

import ast
import uuid
from typing import Mapping

from transforms.hunts.expression import parse_expression
from transforms.hunts.lucene import Untranslatable, _or_atoms, _Translator

NAMESPACE = uuid.UUID("6f1b3c2e-2f51-4c83-9d35-6b8f0b0c4a11")  # rule ids: uuid5(NAMESPACE, hunt id)
LOGSOURCE = {"kubernetes.audit_logs": {"product": "kubernetes", "service": "audit"},
             "falco.alerts": {"product": "falco", "service": "alerts"}}
LEVEL = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}
SA_PREFIX = "system:serviceaccount:"


def _sigma_escape(value: str) -> str:
    # Sigma plain values treat * ? as wildcards and \ as their escape.
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


class _Sigma(_Translator):
    OR = " or "

    def __init__(self, lists: Mapping[str, tuple]):
        super().__init__(lists)
        self.selections: dict[str, dict] = {}

    def sel(self, field: tuple[str, ...], modifier: str, values) -> str:
        name = f"sel{len(self.selections) + 1}"
        key = ".".join(field) + (f"|{modifier}" if modifier else "")
        self.selections[name] = {key: values}
        return name

    def expr(self, node) -> str:
        if isinstance(node, ast.BoolOp):
            joiner = " and " if isinstance(node.op, ast.And) else " or "
            return "(" + joiner.join(self.expr(v) for v in node.values) + ")"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"not {self.expr(node.operand)}"
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node)
        raise Untranslatable(f"`{ast.unparse(node)}` is not a condition Sigma can express")

    @staticmethod
    def plain(value):
        return _sigma_escape(value) if isinstance(value, str) else value

    def compare(self, node) -> str:
        op, right = node.ops[0], node.comparators[0]
        left = self.path(node.left)
        if isinstance(op, (ast.In, ast.NotIn)):
            if left is not None:
                values = self.constants(right)
                if values is None:
                    raise Untranslatable(f"`{ast.unparse(node)}`: membership in a non-constant")
                name = self.sel(left, "", [self.plain(v) for v in values]) if values else None
            else:
                container = self.path(right)
                if container is None or not isinstance(node.left, ast.Constant):
                    raise Untranslatable(f"`{ast.unparse(node)}`")
                name = self.sel(container, "", self.plain(node.left.value))
            if name is None:   # `in ()` never matches
                name = self.sel(("kubehunt_never",), "exists", True)
            return name if isinstance(op, ast.In) else f"not {name}"
        if left is None or not isinstance(right, ast.Constant):
            raise Untranslatable(f"`{ast.unparse(node)}`: only field-to-constant comparisons")
        value = right.value
        if isinstance(op, ast.Eq):
            return self.sel(left, "", self.plain(value))
        if isinstance(op, ast.NotEq):
            return f"not {self.sel(left, '', self.plain(value))}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Untranslatable(f"`{ast.unparse(node)}`: ordering on a non-number")
        modifier = {ast.Lt: "lt", ast.LtE: "lte", ast.Gt: "gt", ast.GtE: "gte"}[type(op)]
        return self.sel(left, modifier, value)

    def call(self, node) -> str:
        name = node.func.id
        if name == "any":
            return self.any(node)
        args = node.args
        field = self.path(args[0]) if args else None
        if name == "exists" and field:
            return self.sel(field, "exists", True)
        if name == "matches" and field:
            return self.sel(field, "re", args[1].value)
        if name in ("startswith", "endswith") and field and len(args) == 2:
            values = self.constants(args[1])
            if values is None and isinstance(args[1], ast.Constant):
                values = (args[1].value,)
            if values is None:
                raise Untranslatable(f"`{ast.unparse(node)}`: non-constant affix")
            return self.sel(field, name, [self.plain(v) for v in values])
        if name == "is_service_account" and field:
            return self.sel(field, "startswith", SA_PREFIX)
        if name == "service_account_in" and field and len(args) == 2:
            names = self.constants(args[1]) or ()
            if not names:
                return self.sel(("kubehunt_never",), "exists", True)
            patterns = []
            for entry in names:
                e = _sigma_escape(entry)
                patterns += [f"{SA_PREFIX}{e}:*", f"{SA_PREFIX}*:{e}", f"{SA_PREFIX}*:{e}-*"]
            return self.sel(field, "", patterns)
        raise Untranslatable(f"`{name}()` has no Sigma equivalent")


def sigma_rule(hunt, lists: Mapping[str, tuple]) -> dict:
    """A Sigma rule (as a dict, to dump as YAML) for `hunt`; ``Untranslatable`` if it cannot be faithful."""
    translator = _Sigma(lists)
    condition = translator.expr(parse_expression(hunt.match, hunt.file))
    technique = hunt.mitre.technique_id.lower()
    tactic = hunt.mitre.tactic_name.lower().replace(" ", "-")
    return {
        "title": hunt.title,
        "id": str(uuid.uuid5(NAMESPACE, hunt.id)),
        "status": "experimental",
        "description": hunt.hypothesis,
        "references": [f"https://attack.mitre.org/techniques/{hunt.mitre.technique_id.replace('.', '/')}/"],
        "author": "kubehunt",
        "tags": [f"attack.{tactic}", f"attack.{technique}"],
        "logsource": LOGSOURCE[hunt.source],
        "detection": {**translator.selections, "condition": condition},
        "fields": [f for _, f in hunt.fields],
        "falsepositives": [hunt.notes] if hunt.notes else ["Unknown"],
        "level": LEVEL[hunt.severity],
    }


__all__ = ["Untranslatable", "sigma_rule", "_or_atoms"]
