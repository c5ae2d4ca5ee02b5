"""The join's messages: named, typed records, one per thing that travels between its stages.

Extraction (``extract``) makes the first three from ECS documents; the stages of ``join`` exchange
the rest. Every record is a ``NamedTuple`` (cheap to build and to pickle, fields by name).
"""
from __future__ import annotations

import pickle
from typing import NamedTuple

SA_PREFIX = "system:serviceaccount:"

# Sources of a pod -> SA decision, best first (rank). `assumed_default` only with --assume-default-sa.
SA_SOURCES = {"pod_create": 3, "pod_claim": 2, "inventory": 1, "assumed_default": 0}
# Inventory facts carry no time: they count as "before the alert" and lose every time tie-break.
TIMELESS = -(2 ** 62)


# -- join inputs (from documents) ----------------------------------------------------------------

class AlertSeen(NamedTuple):
    """A Falco alert in a pod."""
    ns: str
    pod: str
    t_ms: int
    alert_id: str
    rule: str | None


class Action(NamedTuple):
    """An audit event by (or impersonating) a service account."""
    sa: str
    t_ms: int
    event_id: str
    verb: str | None
    resource: str | None      # `pods/exec` for a subresource
    hunts: tuple
    confirms: bool            # an RBAC change or a secret read that succeeded


class PodFact(NamedTuple):
    """Pod (ns, pod) runs as service account ``sa``, as ``source`` said at ``t_ms``."""
    ns: str
    pod: str
    source: str               # a key of SA_SOURCES
    sa: str
    t_ms: int


# -- between the stages --------------------------------------------------------------------------

class Actions(NamedTuple):
    """One bundle's actions of one (SA, time bucket), packed (``pack``): the join pays its state cost
    once per batch, the stateful join keeps the bytes as they came, and a runner that holds a
    shuffle decoded (the local one) holds one bytes object instead of thousands of tuples."""
    packed: bytes

    @classmethod
    def of(cls, actions: list) -> "Actions":
        return cls(pack(actions))

    @property
    def items(self) -> list:
        return unpack(self.packed)


class AlertCopy(NamedTuple):
    """An alert sent to one join bucket of its resolved service account."""
    alert_id: str
    t_ms: int


class Resolution(NamedTuple):
    """An alert's current service account; a later fact may send a higher revision."""
    rev: int
    sa: str
    source: str
    rank: int
    ns: str
    pod: str
    t_ms: int
    rule: str | None


class Pair(NamedTuple):
    """The actions of ``sa`` inside one alert's window (from one join bucket)."""
    sa: str
    actions: list


# -- in state ------------------------------------------------------------------------------------

def pack(value) -> bytes:
    """A value as the join's bag states hold it: one opaque bytes object.

    The SDK's state cache weighs every value it holds by walking it object by object (objsize), on
    every read and write; a bucket's or an incident's records, thousands of small tuples, made that
    walk the join's largest cost. Bytes are weighed at once and pickle in one copy."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(blob: bytes):
    return pickle.loads(blob)
