"""The mapping model: a mapping file (`mappings/ecs/*.yaml`) loaded into a frozen `EcsMapping`.

Loading checks the file's shape and names `file:line` in every error; compiling the rules into
code is `transforms.ecs.codegen`. `ecs_field_types` reads `ecs-fields.yaml`, the ES type of every
emitted ECS field (the ECS component template is generated from it by `scripts/gen_templates.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import mappings
from transforms.ecs.errors import MappingError


@dataclass(frozen=True)
class FieldRule:
    target: str
    expr: str
    line: int


@dataclass(frozen=True)
class EcsMapping:
    file: str
    dataset: str
    original: str
    template: str
    fields: tuple[FieldRule, ...]
    tables: tuple[tuple[str, tuple[tuple[Any, Any], ...]], ...]

    @staticmethod
    def load(path: Path) -> "EcsMapping":
        text = path.read_text()
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as err:
            raise MappingError(f"{path}: invalid YAML: {err}") from err
        if not isinstance(node, yaml.MappingNode):
            raise MappingError(f"{path}:1: a mapping file is a YAML mapping")
        top = {k.value: v for k, v in node.value}
        for key in ("dataset", "original", "fields"):
            if key not in top:
                raise MappingError(f"{path}:1: missing top-level key {key!r}")
        fields_node = top["fields"]
        if not isinstance(fields_node, yaml.MappingNode):
            raise MappingError(f"{path}:{fields_node.start_mark.line + 1}: 'fields' must map ECS field -> source")
        rules, seen = [], set()
        for key, value in fields_node.value:
            line = key.start_mark.line + 1
            if not isinstance(value, yaml.ScalarNode) or not str(value.value).strip():
                raise MappingError(f"{path}:{line}: {key.value}: the source must be one non-empty scalar")
            if key.value in seen:
                raise MappingError(f"{path}:{line}: {key.value} is mapped twice")
            seen.add(key.value)
            rules.append(FieldRule(key.value, str(value.value), line))
        tables = []
        if "tables" in top:
            raw = yaml.safe_load(text).get("tables") or {}
            if not isinstance(raw, dict):
                raise MappingError(f"{path}:{top['tables'].start_mark.line + 1}: 'tables' must map name -> table")
            for name, table in raw.items():
                if not isinstance(table, dict):
                    raise MappingError(f"{path}:{top['tables'].start_mark.line + 1}: table {name!r} is not a mapping")
                tables.append((name, tuple(_table_items(table))))
        template = top["template"].value if "template" in top else ""
        return EcsMapping(str(path), top["dataset"].value, top["original"].value, template,
                          tuple(rules), tuple(tables))


def _table_items(table: dict):
    """`{value: [key, ...]}` entries are inverted (compact groups); `{key: value}` kept; keys lowercased."""
    for key, value in table.items():
        if key == "*":
            yield key, value
        elif isinstance(value, list):
            for k in value:
                yield (k.lower() if isinstance(k, str) else k), key
        else:
            yield (key.lower() if isinstance(key, str) else key), value



def ecs_field_types(directory: str | None = None) -> dict[str, str]:
    """ECS field -> Elasticsearch type, from `mappings/ecs/ecs-fields.yaml`."""
    folder = Path(directory) if directory else mappings.path("ecs")
    return yaml.safe_load((folder / "ecs-fields.yaml").read_text())
