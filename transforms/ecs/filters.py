"""The registries a mapping names: computed fields (`=function`) and filters (`| name[:arg]`).

A filter is a factory `(arg, tables) -> (value -> value | None | DROPPED)`. Every rule ends in a type
guard: a value the index template could not store (an object where a keyword is mapped, text where a
boolean is mapped) becomes DROPPED, so the field is left out and named in `kubehunt.normalise.dropped`.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Callable

from transforms.ecs.errors import DROPPED
from transforms.ecs.times import parse_time, storable_time

FUNCTIONS: dict[str, Callable[[dict], Any]] = {}
FILTERS: dict[str, Callable[..., Callable[[Any], Any]]] = {}


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



def has_object(value) -> bool:
    """True when a list (at any depth) holds a dict: Elasticsearch cannot store that in a leaf field.

    Lists inside the list are walked with a stack (client data may nest them to any depth)."""
    for item in value:  # the usual list (of scalars) is decided in one pass, without the stack
        if type(item) is dict:
            return True
        if type(item) is list:
            break
    else:
        return False
    stack = [value]
    while stack:
        for item in stack.pop():
            if type(item) is dict:
                return True
            if type(item) is list:
                stack.append(item)
    return False


def keyword_guard(value):
    """Scalars and lists of scalars pass; objects (which a keyword/long/date/ip field rejects) drop."""
    t = type(value)
    if t is str or t is int or t is float or t is bool:
        return value
    if t is list:
        return DROPPED if has_object(value) else value
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
            # An integral float past 64 bits (e.g. -1.5e300) is no long: orjson could not even write it.
            return int(value) if -2**63 <= value < 2**63 else DROPPED
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


def valid_ip(text: str) -> bool:
    """`ipaddress.ip_address(text)` would accept it. IPv4 is checked by hand with the same rules (four
    ASCII decimal octets, 0..255, no leading zeros): most addresses are IPv4 and many are seen once."""
    if ":" in text:
        return _valid_ip6(text)
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (part[0] == "0" and part != "0") \
                or int(part) > 255:
            return False
    return True


@lru_cache(maxsize=4096)
def _valid_ip6(text: str) -> bool:
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
            return value if valid_ip(value) else DROPPED
        if type(value) is list:
            ips = [v for v in value if type(v) is str and valid_ip(v)]
            return ips if ips else (DROPPED if value else None)
        return DROPPED
    return to_ip


@ecs_filter("date", typed=True)
def _f_date(arg, tables):
    def to_date(value):
        if type(value) is list or type(value) is dict:
            return DROPPED
        text = parse_time(value)
        return text if text is not None and storable_time(text) else DROPPED
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

