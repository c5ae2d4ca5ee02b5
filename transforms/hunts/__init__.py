"""Hunts: declarative hunt files (``mappings/hunts/<id>.yaml``) compiled once, tagging ECS documents.

- ``model``: the hunt file's dataclasses and their one validating loader (``file:line`` errors);
- ``expression``: the safe match-expression language (ast -> closures, nothing evaluated);
- ``catalogue``: loading, the candidate index and the tagger (``Catalogue.tag``).

The public names are re-exported here: ``from transforms.hunts import load_catalogue, ...``.
"""
from transforms.hunts.catalogue import (TAGGED_FIELDS, Catalogue, CompiledHunt, apply_tags, compile_hunt,
                                        declared_lists, hunt_files, load_catalogue, load_hunts, resolve_lists,
                                        resolved_lists)
from transforms.hunts.expression import FUNCTIONS, INDEX_FIELD, VERB_FIELD, compile_expression, parse_expression
from transforms.hunts.model import RAW_SOURCE, SEVERITIES, SOURCES, Hunt, HuntError, HuntSettings, Mitre, parse_hunt

__all__ = ["FUNCTIONS", "INDEX_FIELD", "RAW_SOURCE", "SEVERITIES", "SOURCES", "TAGGED_FIELDS", "VERB_FIELD",
           "Catalogue", "CompiledHunt", "Hunt", "HuntError", "HuntSettings", "Mitre", "apply_tags",
           "compile_expression", "compile_hunt", "declared_lists", "hunt_files", "load_catalogue", "load_hunts",
           "parse_expression", "parse_hunt", "resolve_lists", "resolved_lists"]
