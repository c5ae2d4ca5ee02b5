"""The source namespace against its index template: what the index would reject is refused here.

Measured on Elasticsearch 8.12: leaf fields refuse objects; object and flattened fields refuse
scalars; boolean refuses anything but true/false; field names must be non-empty and not made of dots.
A refusal is a reason (the field and why) that the normaliser turns into a dead letter.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import orjson

import mappings
from transforms.ecs.filters import has_object

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
    """Where a key holding NUL sits inside a flattened value (Elasticsearch reserves \\0 there).

    The walk keeps its own stack of iterators, not Python's: a flattened value is client data and may
    nest to any depth. It visits keys in document order, descending as it goes (the first NUL key found
    is the first in the document)."""
    stack = [(_children(value), where)]
    while stack:
        items, where = stack[-1]
        for key, item in items:
            if key is not None and "\x00" in key:
                return f"{where}[{key!r}]"
            if type(item) is dict or type(item) is list:
                stack.append((_children(item), where if key is None else f"{where}.{key}"))
                break
        else:
            stack.pop()
    return None


def _may_hold_nul(value) -> bool:
    """False when no key or value inside `value` holds NUL: orjson writes NUL as \\u0000, and one
    serialisation in C is much cheaper than walking the value in Python."""
    try:
        return b"\\u0000" in orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past orjson's limit: let the walk decide
        return True


def _children(value):
    """(key, item) pairs of a dict; (None, item) of a list."""
    return iter(value.items()) if type(value) is dict else ((None, item) for item in value)


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
            if t is dict or (t is list and has_object(item)):
                return f"{where}.{key} is an object; the index maps it as a plain value"
        elif kind is _OBJECT:
            reason = _check_object(item, inner, f"{where}.{key}", deep)
            if reason:
                return reason
        elif kind is _FLAT:
            if type(item) is not dict and not (type(item) is list and all(type(i) is dict or i is None for i in item)):
                return f"{where}.{key} is a {type(item).__name__}; the index stores it as an object (flattened)"
            if deep and _may_hold_nul(item):
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

