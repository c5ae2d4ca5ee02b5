"""Declarative data for kubehunt: ECS field maps, hunt definitions, index templates, Kibana objects, Falco rules.

Shipped as package data so an installed kubehunt finds it; ``path()`` resolves a file in it.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    """Absolute path of a file or folder inside the mappings package."""
    return ROOT.joinpath(*parts)
