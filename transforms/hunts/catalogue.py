"""The hunt catalogue: loads every hunt file, compiles it, indexes it, and tags ECS documents.

The catalogue indexes hunts by dataset and, for audit hunts whose expression is a conjunction with
``kubernetes.audit.objectRef.resource == 'x'`` / ``in (...)`` (or the same on the verb), by those
values, so an event evaluates only the hunts that could match it (memoised per (dataset, resource,
verb)).

Tagging (``Catalogue.tag``) adds ``kubehunt.hunts`` (matching ids), ``threat.*`` and
``event.risk_score`` (max over matching hunts). A hunt that raises on an event is treated as no
match for that event and recorded in ``kubehunt.hunt_errors``: the event is never lost.

Tunable lists: a hunt file declares ``lists: {name: [defaults]}`` and uses ``setting('name')``;
``HuntSettings.lists`` overrides them by name. ``Catalogue.confirming`` is the set of hunts marked
``confirms_incident: true``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import mappings
from transforms.hunts.expression import INDEX_FIELD, VERB_FIELD, compile_expression, index_keys, parse_expression
from transforms.hunts.model import Hunt, HuntError, HuntSettings, parse_hunt
from transforms.hunts.requests import PendingMatches, settle

# Fields `Catalogue.tag` writes (typed in mappings/ecs/ecs-fields.yaml, like the normaliser's own).
TAGGED_FIELDS = ("kubehunt.hunts", "kubehunt.hunt_errors", "event.risk_score", "threat.framework",
                 "threat.tactic.id", "threat.tactic.name", "threat.technique.id", "threat.technique.name")
_MEMO_LIMIT = 4096  # distinct (dataset, resource, verb) candidate lists kept per worker


def hunt_files(settings: HuntSettings) -> list[Path]:
    folder = Path(settings.hunts_dir) if settings.hunts_dir else mappings.path("hunts")
    if not folder.is_dir():
        raise HuntError(f"{folder}: hunts folder not found")
    return sorted(folder.glob("*.yaml"))


def load_hunts(settings: HuntSettings | None = None) -> list[Hunt]:
    return [parse_hunt(p) for p in hunt_files(settings or HuntSettings())]


def declared_lists(hunts: list[Hunt]) -> dict[str, tuple[str, ...]]:
    """The tunable lists the hunt files declare, with their defaults; two declarations must agree."""
    out: dict[str, tuple[str, ...]] = {}
    where: dict[str, str] = {}
    for hunt in hunts:
        for name, values in hunt.lists:
            if name in out and out[name] != values:
                raise HuntError(f"{hunt.file}: lists: {name!r} is also declared by {where[name]} with "
                                "other defaults; declare it once")
            out[name], where[name] = values, hunt.file
    return out


def resolve_lists(hunts: list[Hunt], settings: HuntSettings) -> dict[str, tuple[str, ...]]:
    lists = declared_lists(hunts)
    unknown = sorted(name for name, _ in settings.lists if name not in lists)
    if unknown:
        raise HuntError(f"unknown hunt list {unknown[0]!r} (the hunt files declare: "
                        f"{', '.join(sorted(lists)) or 'none'})")
    lists.update(settings.lists)
    return lists


@lru_cache(maxsize=8)
def _shipped_lists(hunts_dir: str | None) -> dict[str, tuple[str, ...]]:
    return declared_lists(load_hunts(HuntSettings(hunts_dir=hunts_dir)))


def resolved_lists(settings: HuntSettings) -> dict[str, tuple[str, ...]]:
    """Declared defaults overlaid with the settings' overrides (for code holding only settings)."""
    lists = dict(_shipped_lists(settings.hunts_dir))
    lists.update(settings.lists)
    return lists


@dataclass(frozen=True)
class CompiledHunt:
    hunt: Hunt
    predicate: Callable[[dict], bool]
    index_keys: frozenset | None
    verb_keys: frozenset | None = None


@dataclass
class Catalogue:
    """Compiled hunts indexed for the per-event tagger (built once per worker)."""
    hunts: tuple[CompiledHunt, ...]

    def __post_init__(self):
        seen: dict[str, str] = {}
        for c in self.hunts:
            for name in (c.hunt.id, *c.hunt.aliases):
                if name in seen:
                    raise HuntError(f"{c.hunt.file}: id or alias {name!r} already used by {seen[name]}")
                seen[name] = c.hunt.file
        self._memo: dict[tuple, tuple] = {}
        self._pending = PendingMatches()

    @property
    def by_id(self) -> dict[str, Hunt]:
        out = {}
        for c in self.hunts:
            out[c.hunt.id] = c.hunt
            for alias in c.hunt.aliases:
                out[alias] = c.hunt
        return out

    @property
    def confirming(self) -> frozenset[str]:
        """Ids of the hunts whose match by a correlated account confirms an incident."""
        return frozenset(c.hunt.id for c in self.hunts if c.hunt.confirms_incident)

    def _select(self, dataset, resource, verb) -> tuple:
        return tuple(c for c in self.hunts if c.hunt.source == dataset
                     and (c.index_keys is None or resource in c.index_keys)
                     and (c.verb_keys is None or verb in c.verb_keys))

    def candidates(self, doc: dict) -> tuple:
        """The hunts that could match `doc`, from its dataset, resource and verb (memoised: most
        events are reads that no hunt on writes needs to look at)."""
        event = doc.get("event")
        dataset = event.get("dataset") if isinstance(event, dict) else None
        resource = verb = None
        audit = doc.get("kubernetes")
        audit = audit.get("audit") if isinstance(audit, dict) else None
        if isinstance(audit, dict):
            verb = audit.get("verb")
            ref = audit.get("objectRef")
            resource = ref.get("resource") if isinstance(ref, dict) else None
            if not isinstance(verb, str):
                verb = None
            if not isinstance(resource, str):
                resource = None
        key = (dataset, resource, verb)
        found = self._memo.get(key)
        if found is None:
            found = self._select(dataset, resource, verb)
            if len(self._memo) < _MEMO_LIMIT:
                self._memo[key] = found
        return found

    def matching(self, doc: dict) -> tuple[list, list[str]]:
        """(compiled hunts matching `doc`, error texts of hunts that raised), without changing `doc`."""
        matched: list[CompiledHunt] = []
        errors: list[str] = []
        for compiled in self.candidates(doc):
            try:
                hit = compiled.predicate(doc)
            except Exception as err:  # noqa: BLE001 - one broken hunt must not lose the event
                errors.append(f"{compiled.hunt.id}: {type(err).__name__}: {err}"[:300])
                continue
            if hit:
                matched.append(compiled)
        return matched, errors

    def tag(self, doc: dict) -> list[str]:
        """Tag `doc` in place with the hunts it matches; returns the matching hunt ids."""
        matched, errors = self.matching(doc)
        if errors:
            doc.setdefault("kubehunt", {})["hunt_errors"] = errors
        if not matched:
            return []
        hunts = [c.hunt for c in matched]
        if doc.get("event", {}).get("dataset") == "kubernetes.audit_logs":
            self._pending.note(doc, hunts)
        return apply_tags(doc, hunts)

    def settle_requests(self, out: list, hits: dict[str, int]) -> list:
        """End of a chunk: one match per request (``transforms.hunts.requests``). `out` holds the
        chunk's SinkItems and `hits` its per-hunt counts; both are corrected."""
        return settle(self._pending, out, hits, apply_tags)


def apply_tags(doc: dict, hunts: list[Hunt]) -> list[str]:
    """Write `kubehunt.hunts`, `threat.*` and `event.risk_score` for `hunts` (non-empty) into `doc`."""
    ids = [h.id for h in hunts]
    doc.setdefault("kubehunt", {})["hunts"] = ids
    _add_threat(doc, hunts)
    return ids


def _merge(existing, new: list) -> list:
    out = list(existing) if isinstance(existing, list) else ([existing] if existing is not None else [])
    for value in new:
        if value not in out:
            out.append(value)
    return out


def _add_threat(doc: dict, hunts: list[Hunt]) -> None:
    event = doc.setdefault("event", {})
    risk = max(h.risk_score for h in hunts)
    current = event.get("risk_score")
    event["risk_score"] = risk if not isinstance(current, (int, float)) else max(current, risk)
    threat = doc.get("threat")
    if not isinstance(threat, dict):
        threat = doc["threat"] = {}
    threat["framework"] = "MITRE ATT&CK"
    tactic = threat.get("tactic") if isinstance(threat.get("tactic"), dict) else {}
    technique = threat.get("technique") if isinstance(threat.get("technique"), dict) else {}
    tactic["id"] = _merge(tactic.get("id"), [h.mitre.tactic_id for h in hunts])
    tactic["name"] = _merge(tactic.get("name"), [h.mitre.tactic_name for h in hunts])
    technique["id"] = _merge(technique.get("id"), [h.mitre.technique_id for h in hunts])
    technique["name"] = _merge(technique.get("name"), [h.mitre.technique_name for h in hunts])
    threat["tactic"], threat["technique"] = tactic, technique


def compile_hunt(hunt: Hunt, settings) -> CompiledHunt:
    """Compile one hunt; `settings` is a HuntSettings or the resolved lists (name -> values)."""
    predicate, keys = compile_expression(hunt.match, hunt.file, settings)
    verbs = index_keys(parse_expression(hunt.match, hunt.file), VERB_FIELD, hunt.file)
    return CompiledHunt(hunt, predicate, keys, verbs)


def load_catalogue(settings: HuntSettings) -> Catalogue:
    """Load, validate and compile every hunt file (default: the shipped mappings/hunts)."""
    hunts = load_hunts(settings)
    lists = resolve_lists(hunts, settings)
    return Catalogue(tuple(compile_hunt(h, lists) for h in hunts))


__all__ = ["INDEX_FIELD", "TAGGED_FIELDS", "Catalogue", "CompiledHunt", "apply_tags", "compile_hunt",
           "declared_lists", "hunt_files", "load_catalogue", "load_hunts", "resolve_lists", "resolved_lists"]
