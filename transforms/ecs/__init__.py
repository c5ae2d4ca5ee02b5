"""Normalise source records to Elastic Common Schema documents, driven by `mappings/ecs/*.yaml`.

A mapping is one line per ECS field::

    ecs.field: source [?? source ...] [| filter[:arg] ...]

where a *source* is a dotted path in the record (``user.username``), ``of:<key>`` (one Falco output
field by its exact, dotted key), ``=function`` (a registered function of the record) or a constant
(``"'text'"``, a number, a list); ``??`` takes the first source that has a value (None, "", [] and
{} have none); *filters* convert and type-check the value (``str``, ``long``, ``ip``, ``date``,
``bool``, ``split``, ``lower``, ``table:<name>`` for a lookup in the file's ``tables:`` section ...).

Where each part lives:

- ``model``: the mapping file loaded into a frozen ``EcsMapping`` (errors name ``file:line``);
- ``filters``: the registries of filters and ``=functions``, and the type guards;
- ``codegen``: the compiler, which turns a mapping into one generated Python function per source
  (its text is pinned by a golden test); the only implementation of the mapping language;
- ``audit`` / ``gke`` / ``falco``: the computed fields of each source;
- ``storable``: the source namespace checked against its index template (what the index would reject
  is a ``NormaliseError`` naming the field and the reason);
- ``times``: event times; ``ids``: deterministic event ids; ``normaliser``: ``Normaliser.to_ecs``.

Every rule ends in a type guard, so a value the index template could not store is left out of the ECS
field and named in ``kubehunt.normalise.dropped`` (the original value is still in the source namespace).

Contract for every later stage: a document has ``@timestamp`` from the event's own time (RFC 3339
UTC text, the source's own precision), ``event.dataset``, a deterministic ``event.id`` and the
source record under its namespace (``kubernetes.audit`` / ``falco``).
"""
from __future__ import annotations

from transforms.ecs.errors import DROPPED, MappingError, NormaliseError
from transforms.ecs.times import parse_time, storable_time, to_epoch_ms
from transforms.ecs.filters import FILTERS, FUNCTIONS, ecs_filter, ecs_function, keyword_guard
# Importing the computed-field modules registers their `=functions` before any mapping compiles.
from transforms.ecs import audit as _audit, falco as _falco  # noqa: F401
from transforms.ecs.gke import gke_to_event
from transforms.ecs.model import EcsMapping, FieldRule, ecs_field_types
from transforms.ecs.storable import compile_template_check, template_properties
from transforms.ecs.codegen import CompiledMapping, compile_mapping, load_mapping
from transforms.ecs.ids import event_id
from transforms.ecs.normaliser import Normaliser
from transforms.sources import ALL as _SOURCES

MAPPING_FILES = {s.name: s.mapping_file for s in _SOURCES}

__all__ = [
    "DROPPED", "FILTERS", "FUNCTIONS", "MAPPING_FILES", "CompiledMapping", "EcsMapping", "FieldRule",
    "MappingError", "NormaliseError", "Normaliser", "compile_mapping", "compile_template_check",
    "ecs_field_types", "ecs_filter", "ecs_function", "event_id", "gke_to_event", "keyword_guard",
    "load_mapping", "parse_time", "storable_time", "template_properties", "to_epoch_ms",
]
