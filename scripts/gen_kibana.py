#!/usr/bin/env python3
"""Generate Kibana saved searches (one per hunt) and their data views from mappings/hunts.

Output: mappings/kibana/saved-searches.ndjson in Kibana 8's saved-object export format (import it with
Stack Management > Saved Objects > Import, or POST /api/saved_objects/_import). Each saved search holds the
KQL query `kubehunt.hunts : "<id>"` and the hunt's analyst fields as columns, on the data view of the hunt's
data streams. Deterministic (no timestamps), so tests/test_kibana.py regenerates and compares.

    python scripts/gen_kibana.py [--check]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mappings  # noqa: E402
from transforms.hunts import HuntSettings, load_hunts  # noqa: E402

OUTPUT = mappings.path("kibana", "saved-searches.ndjson")
CORE_MIGRATION_VERSION = "8.8.0"
DATA_VIEWS = {
    "kubernetes.audit_logs": ("kubehunt-data-view-audit", "logs-kubernetes.audit_logs-*", "kubehunt: Kubernetes audit events"),
    "falco.alerts": ("kubehunt-data-view-falco", "logs-falco.alerts-*", "kubehunt: Falco alerts"),
}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def data_view(source: str) -> dict:
    view_id, pattern, name = DATA_VIEWS[source]
    return {
        "attributes": {"fieldAttrs": "{}", "fieldFormatMap": "{}", "fields": "[]", "name": name,
                       "runtimeFieldMap": "{}", "sourceFilters": "[]", "timeFieldName": "@timestamp",
                       "title": pattern, "typeMeta": "{}"},
        "coreMigrationVersion": CORE_MIGRATION_VERSION, "id": view_id, "managed": False, "references": [],
        "type": "index-pattern", "typeMigrationVersion": "8.0.0",
    }


def kql(hunt_id: str) -> str:
    return f'kubehunt.hunts : "{hunt_id}"'


def saved_search(hunt) -> dict:
    source = {"query": {"query": kql(hunt.id), "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF}
    columns = [field for label, field in hunt.fields if field != "@timestamp"]
    return {
        "attributes": {
            "columns": columns,
            "description": f"{hunt.hypothesis} [{hunt.severity}, risk {hunt.risk_score:g}, "
                           f"{hunt.mitre.tactic_id} {hunt.mitre.technique_id} {hunt.mitre.technique_name}]",
            "grid": {}, "hideChart": False, "isTextBasedQuery": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, separators=(",", ":"))},
            "sort": [["@timestamp", "desc"]], "timeRestore": False,
            "title": f"kubehunt: {hunt.title} ({hunt.id})",
        },
        "coreMigrationVersion": CORE_MIGRATION_VERSION, "id": f"kubehunt-hunt-{hunt.id}", "managed": False,
        "references": [{"id": DATA_VIEWS[hunt.source][0], "name": INDEX_REF, "type": "index-pattern"}],
        "type": "search", "typeMigrationVersion": "8.0.0",
    }


def render(hunts_dir: str | None = None) -> str:
    hunts = load_hunts(HuntSettings(hunts_dir=hunts_dir))
    objects = [data_view(s) for s in DATA_VIEWS if any(h.source == s for h in hunts)]
    objects += [saved_search(h) for h in hunts]
    summary = {"excludedObjects": [], "excludedObjectsCount": 0, "exportedCount": len(objects),
               "missingRefCount": 0, "missingReferences": []}
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in [*objects, summary])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file on disk is not what would be generated")
    args = ap.parse_args()
    text = render()
    if args.check:
        same = OUTPUT.is_file() and OUTPUT.read_text() == text
        print(f"{OUTPUT}: {'up to date' if same else 'OUT OF DATE: run scripts/gen_kibana.py'}")
        return 0 if same else 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({text.count(chr(10)) - 1} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
