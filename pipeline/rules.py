"""`kubehunt rules export --format elastic|sigma`: the hunts as detection rules for other tools.

- elastic: NDJSON for Elastic Security's rule import (Security > Rules > Import, or
  `POST /api/detection_engine/rules/_import`): one custom query rule per hunt, language Lucene, its query
  the hunt's own logic (``transforms.hunts.lucene``) on the ECS / kubernetes.audit fields, so it works
  on data kubehunt did not tag. Rules are exported disabled: enable them after review.
- sigma: one Sigma rule per hunt, as a YAML stream (``---`` between documents).

A hunt whose logic cannot be expressed faithfully is left out and named on stderr with the reason
(`--strict` makes that an error, exit 1). The tunable lists (`--hunt-list`) are baked in.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from transforms.sources import ALL as SOURCE_REGISTRY

INDEX = {s.dataset: [s.index_pattern] for s in SOURCE_REGISTRY}
RISK_SEVERITY = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}


def add_parser(sub) -> None:
    from pipeline.options import add_hunt_arguments

    rules = sub.add_parser("rules", help="export the hunts as detection rules (Elastic Security, Sigma)")
    actions = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write one rule per hunt")
    export.add_argument("--format", choices=("elastic", "sigma"), required=True,
                        help="elastic: Elastic Security rule import NDJSON; sigma: Sigma YAML rules")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    export.add_argument("--strict", action="store_true", help="fail (exit 1) if a hunt cannot be translated")
    add_hunt_arguments(export)


def _mitre(hunt) -> list[dict]:
    tactic = hunt.mitre.tactic_id
    technique = hunt.mitre.technique_id
    parent, _, sub = technique.partition(".")
    entry = {"id": parent, "name": hunt.mitre.technique_name,
             "reference": f"https://attack.mitre.org/techniques/{parent}/"}
    if sub:
        entry["subtechnique"] = [{"id": technique, "name": hunt.mitre.technique_name,
                                  "reference": f"https://attack.mitre.org/techniques/{parent}/{sub}/"}]
    return [{"framework": "MITRE ATT&CK",
             "tactic": {"id": tactic, "name": hunt.mitre.tactic_name,
                        "reference": f"https://attack.mitre.org/tactics/{tactic}/"},
             "technique": [entry]}]


def elastic_rule(hunt, query: str) -> dict:
    return {
        "rule_id": f"kubehunt-{hunt.id}", "name": f"kubehunt: {hunt.title}", "description": hunt.hypothesis,
        "type": "query", "language": "lucene", "query": query, "index": INDEX[hunt.source],
        "risk_score": int(round(hunt.risk_score)), "severity": RISK_SEVERITY[hunt.severity],
        "threat": _mitre(hunt), "tags": ["kubehunt", "Kubernetes", f"kubehunt:{hunt.id}"],
        "author": ["kubehunt"], "license": "Apache-2.0", "from": "now-6m", "interval": "5m",
        "max_signals": 100, "enabled": False, "version": 1, "references": [], "false_positives":
            [hunt.notes] if hunt.notes else [], "note": f"Analyst fields: {', '.join(f for _, f in hunt.fields)}",
        "actions": [], "exceptions_list": [],
    }


def flattened_fields() -> tuple[str, ...]:
    """Dotted paths the project's index templates map as `flattened` (all values keywords there)."""
    import mappings
    out: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.get("properties", {}).items():
            if value.get("type") == "flattened":
                out.append(prefix + key)
            walk(value, f"{prefix}{key}.")
    for path in sorted(mappings.path("templates", "component").glob("*.json")):
        walk(json.loads(path.read_text()).get("template", {}).get("mappings", {}), "")
    return tuple(sorted(out))


def export(fmt: str, settings) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    """(the export text, [(hunt id, why it was left out)], [(hunt id, approximation exported)])."""
    from transforms.hunts import load_hunts, resolve_lists
    from transforms.hunts.lucene import translate
    from transforms.hunts.translate import Untranslatable

    hunts = load_hunts(settings)
    lists = resolve_lists(hunts, settings)
    flattened = flattened_fields()
    parts, skipped, approximate = [], [], []
    for hunt in hunts:
        try:
            if fmt == "elastic":
                query, notes = translate(hunt.match, lists, hunt.file, flattened)
                rule = elastic_rule(hunt, query)
                if notes:
                    rule["note"] += "\nApproximation: " + "; ".join(notes)
                    approximate += [(hunt.id, n) for n in notes]
                parts.append(json.dumps(rule, sort_keys=True) + "\n")
            else:
                import yaml

                from transforms.hunts.sigma import sigma_rule
                parts.append(yaml.safe_dump(sigma_rule(hunt, lists), sort_keys=False, allow_unicode=True))
        except Untranslatable as err:
            skipped.append((hunt.id, str(err)))
    text = "".join(parts) if fmt == "elastic" else "---\n".join(parts)
    return text, skipped, approximate


def cmd_rules(args, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from pipeline.options import hunt_settings_from_args

    text, skipped, approximate = export(args.format, hunt_settings_from_args(args))
    if args.out:
        Path(args.out).write_text(text)
    else:
        out.write(text)
    for hunt_id, why in skipped:
        print(f"kubehunt: rules: {hunt_id} not exported ({args.format}): {why}", file=sys.stderr)
    for hunt_id, why in approximate:
        print(f"kubehunt: rules: {hunt_id} exported with an approximation: {why}", file=sys.stderr)
    return 1 if skipped and args.strict else 0
