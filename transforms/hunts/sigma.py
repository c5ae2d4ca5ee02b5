"""Translate a hunt into a Sigma rule (https://sigmahq.io): detection selections and a condition.

Each condition of the match expression becomes one selection (``sel1: {field|modifier: values}``) and
the boolean structure becomes the Sigma ``condition`` (``sel1 and (sel2 or not sel3)``). Sigma has
regular expressions (``|re``), so ``matches()`` translates here; the rest of the limits are those of
the walk, ``transforms.hunts.translate`` (object arrays are flattened by SIEMs too), and raise
``Untranslatable``. This module is the walk's Sigma emitter.
"""
from __future__ import annotations

import uuid
from typing import Mapping

from transforms.hunts.translate import Emitter, Untranslatable, walk
from transforms.sources import by_dataset

NAMESPACE = uuid.UUID("6f1b3c2e-2f51-4c83-9d35-6b8f0b0c4a11")  # rule ids: uuid5(NAMESPACE, hunt id)
LEVEL = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}
SA_PREFIX = "system:serviceaccount:"


def _sigma_escape(value: str) -> str:
    # Sigma plain values treat * ? as wildcards and \ as their escape.
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


class _Sigma(Emitter):
    """Each condition becomes a selection (``sel<n>: {field|modifier: values}``); the condition
    names them."""

    NAME = "Sigma"
    EQUIVALENT = "Sigma equivalent"
    AND, OR = " and ", " or "

    def __init__(self):
        self.selections: dict[str, dict] = {}

    def sel(self, field: tuple[str, ...], modifier: str, values) -> str:
        name = f"sel{len(self.selections) + 1}"
        key = ".".join(field) + (f"|{modifier}" if modifier else "")
        self.selections[name] = {key: values}
        return name

    @staticmethod
    def plain(value):
        return _sigma_escape(value) if isinstance(value, str) else value

    def negate(self, query: str) -> str:
        return f"not {query}"

    def never(self, negated: bool = False) -> str:
        name = self.sel(("kubehunt_never",), "exists", True)
        return self.negate(name) if negated else name

    def equals(self, field, value) -> str:
        return self.sel(field, "", self.plain(value))

    def one_of(self, field, values) -> str:
        return self.sel(field, "", [self.plain(v) for v in values])

    def contains(self, field, value) -> str:
        return self.sel(field, "", self.plain(value))

    def order(self, field, op: str, value) -> str:
        return self.sel(field, op, value)

    def exists(self, field) -> str:
        return self.sel(field, "exists", True)

    def affix(self, field, kind: str, values) -> str:
        return self.sel(field, kind, [self.plain(v) for v in values])

    def regex(self, field, pattern: str) -> str:
        return self.sel(field, "re", pattern)

    def service_account(self, field) -> str:
        return self.sel(field, "startswith", SA_PREFIX)

    def service_account_in(self, field, names) -> str:
        patterns = []
        for entry in names:
            e = _sigma_escape(entry)
            patterns += [f"{SA_PREFIX}{e}:*", f"{SA_PREFIX}*:{e}", f"{SA_PREFIX}*:{e}-*"]
        return self.sel(field, "", patterns)


def sigma_rule(hunt, lists: Mapping[str, tuple]) -> dict:
    """A Sigma rule (as a dict, to dump as YAML) for `hunt`; ``Untranslatable`` if it cannot be faithful."""
    emitter = _Sigma()
    condition = walk(emitter, hunt.match, lists, hunt.file)
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
        "logsource": dict(by_dataset(hunt.source).sigma_logsource),
        "detection": {**emitter.selections, "condition": condition},
        "fields": [f for _, f in hunt.fields],
        "falsepositives": [hunt.notes] if hunt.notes else ["Unknown"],
        "level": LEVEL[hunt.severity],
    }


__all__ = ["Untranslatable", "sigma_rule"]
