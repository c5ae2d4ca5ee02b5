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

The walk of the expression is ``transforms.hunts.translate`` (shared with the Sigma exporter); this
module is its Lucene emitter. Semantics kept: a missing field never equals, orders or belongs (``NOT f:x`` matches a missing ``f``,
as ``f != x`` does here); ``x == True`` is the term ``true``. One approximation, reported in
``notes``: inside a ``flattened`` field (the audit event's requestObject, annotations, ...) every
value is a keyword, so ``== True`` also matches the *string* "true" there, which the hunt does not.
"""
from __future__ import annotations

from typing import Mapping

from transforms.hunts.translate import Emitter, Untranslatable, walk

__all__ = ["Untranslatable", "escape_term", "to_lucene", "translate"]

_SPECIAL = set('+-=&|><!(){}[]^"~*?:\\/ ')
_SA = "system\\:serviceaccount\\:"
_ORDER = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


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


class _Lucene(Emitter):
    NAME = "Lucene"
    EQUIVALENT = "faithful Lucene equivalent"
    AND, OR = " AND ", " OR "

    def __init__(self, flattened: tuple[str, ...] = ()):
        self.flattened = flattened
        self.notes: list[str] = []

    def negate(self, query: str) -> str:
        # A purely negative clause inside a boolean query matches nothing in Lucene: anchor it.
        return f"(*:* AND NOT {query})"

    def never(self, negated: bool = False) -> str:
        return "*:*" if negated else "(NOT *:*)"

    def equals(self, field, value) -> str:
        if isinstance(value, bool):
            # Elasticsearch indexes the string "true" as true either way: a boolean field coerces it,
            # a flattened field keeps every value as a keyword. The hunt itself tells them apart.
            dotted = ".".join(field)
            kind = "a flattened field" if any(dotted.startswith(f + ".") for f in self.flattened) \
                else "a boolean field (it coerces strings)"
            self.notes.append(f"{dotted} == {value}: {kind}, so the string {str(value).lower()!r} matches too")
        return f"{_field(field)}:{_value(value)}"

    def one_of(self, field, values) -> str:
        return f"{_field(field)}:(" + " OR ".join(_value(v) for v in values) + ")"

    def contains(self, field, value) -> str:
        return f"{_field(field)}:{_value(value)}"

    def order(self, field, op: str, value) -> str:
        return f"{_field(field)}:{_ORDER[op]}{_value(value)}"

    def exists(self, field) -> str:
        return f"_exists_:{_field(field)}"

    def affix(self, field, kind: str, values) -> str:
        pattern = "{}*" if kind == "startswith" else "*{}"
        return self.any_of([f"{_field(field)}:{pattern.format(escape_term(v))}" for v in values])

    def service_account(self, field) -> str:
        return f"{_field(field)}:{_SA}*"

    def service_account_in(self, field, names) -> str:
        f = _field(field)
        clauses = []
        for entry in names:
            e = escape_term(entry)
            # namespace == entry, name == entry, or name starts with `entry-`
            clauses += [f"{f}:{_SA}{e}\\:*", f"{f}:{_SA}*\\:{e}", f"{f}:{_SA}*\\:{e}\\-*"]
        return self.any_of(clauses)


def translate(match: str, lists: Mapping[str, tuple], where: str = "",
              flattened: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """(Lucene query, approximation notes) for a match expression; ``Untranslatable`` when it cannot
    be faithful. `flattened`: the dotted paths the index maps as `flattened`."""
    emitter = _Lucene(flattened)
    return walk(emitter, match, lists, where), emitter.notes


def to_lucene(match: str, lists: Mapping[str, tuple], where: str = "") -> str:
    return translate(match, lists, where)[0]
