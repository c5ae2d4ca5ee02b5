"""Hunt catalogue: declarative hunts (mappings/hunts/*.yaml) compiled once, tagging ECS documents.

(Foundation seam: the catalogue is filled in by the hunts work; until then it tags nothing.)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HuntSettings:
    """User-tunable hunt configuration: plain data, picklable, passed to workers."""
    hunts_dir: str | None = None
    secret_reader_exclusions: tuple[str, ...] = ("cert-manager", "vault", "external-secrets")
    known_memfd_users: tuple[str, ...] = ()
    known_debugger_procs: tuple[str, ...] = ("gdb", "lldb", "strace", "ltrace")


class Catalogue:
    def tag(self, doc: dict) -> list[str]:
        return []


def load_catalogue(settings: HuntSettings) -> Catalogue:
    return Catalogue()
