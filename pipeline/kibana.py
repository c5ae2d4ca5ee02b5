"""Kibana saved objects generated from the hunt catalogue, and `kubehunt kibana export|import`.

The objects (Kibana 8.x saved-object export format, the versions Kibana 8.12 writes, so it imports them
without migrating): data views for the audit and Falco data streams, incidents and dead letters; one
saved search per hunt (its title and hypothesis, the KQL `kubehunt.hunts : "<id>"`, the hunt's analyst
fields as columns, newest first); saved searches for all incidents and for confirmed ones; and a
dashboard of Lens panels by value (incidents over time, confirmed incidents, hunt matches by hunt,
dead letters over time). Ids are stable and the output is deterministic (no timestamps), so the
shipped file is regenerated and compared by a test.

    kubehunt kibana export [--out FILE]                       the NDJSON (stdout by default)
    kubehunt kibana import --kibana-url URL [--space S]       POST /api/saved_objects/_import?overwrite=true
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO
from transforms.sources import ALL as SOURCE_REGISTRY

CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = {"index-pattern": "8.0.0", "search": "8.0.0", "dashboard": "8.9.0"}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
# source -> (data view id, index pattern, name); the event sources' come from the registry.
DATA_VIEWS = {
    **{src.dataset: (src.data_view_id, src.index_pattern, src.title) for src in SOURCE_REGISTRY},
    "incidents": ("kubehunt-data-view-incidents", "kubehunt-incidents*", "kubehunt: incidents"),
    "dead_letters": ("kubehunt-data-view-dead-letters", "kubehunt-dead-letters*", "kubehunt: dead letters"),
}
INCIDENT_COLUMNS = ["kubehunt.incident.service_account", "kubehunt.incident.confirmed",
                    "kubehunt.incident.alert_rule", "kubehunt.incident.pod", "kubehunt.incident.action_count",
                    "kubehunt.incident.hunts", "kubehunt.incident.sa_source"]
CONFIRMED_KQL = "kubehunt.incident.confirmed : true"
DASHBOARD_ID = "kubehunt-dashboard-overview"


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _object(kind: str, object_id: str, attributes: dict, references: list[dict]) -> dict:
    return {"attributes": attributes, "coreMigrationVersion": CORE_MIGRATION_VERSION, "id": object_id,
            "managed": False, "references": references, "type": kind,
            "typeMigrationVersion": TYPE_MIGRATION_VERSION[kind]}


def data_view(key: str) -> dict:
    view_id, pattern, name = DATA_VIEWS[key]
    return _object("index-pattern", view_id, {
        "fieldAttrs": "{}", "fieldFormatMap": "{}", "fields": "[]", "name": name, "runtimeFieldMap": "{}",
        "sourceFilters": "[]", "timeFieldName": "@timestamp", "title": pattern, "typeMeta": "{}"}, [])


def kql(hunt_id: str) -> str:
    return f'kubehunt.hunts : "{hunt_id}"'


def _search(object_id: str, title: str, description: str, query: str, columns: list[str], view: str) -> dict:
    source = {"query": {"query": query, "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF}
    return _object("search", object_id, {
        "columns": columns, "description": description, "grid": {}, "hideChart": False,
        "isTextBasedQuery": False, "kibanaSavedObjectMeta": {"searchSourceJSON": _json(source)},
        "sort": [["@timestamp", "desc"]], "timeRestore": False, "title": title},
        [{"id": DATA_VIEWS[view][0], "name": INDEX_REF, "type": "index-pattern"}])


def saved_search(hunt) -> dict:
    return _search(f"kubehunt-hunt-{hunt.id}", f"kubehunt: {hunt.title} ({hunt.id})",
                   f"{hunt.hypothesis} [{hunt.severity}, risk {hunt.risk_score:g}, "
                   f"{hunt.mitre.tactic_id} {hunt.mitre.technique_id} {hunt.mitre.technique_name}]",
                   kql(hunt.id), [f for _, f in hunt.fields if f != "@timestamp"], hunt.source)


def incident_searches() -> list[dict]:
    return [
        _search("kubehunt-incidents-all", "kubehunt: incidents",
                "Every incident: a Falco alert joined to its pod's service-account activity.", "",
                INCIDENT_COLUMNS, "incidents"),
        _search("kubehunt-incidents-confirmed", "kubehunt: confirmed incidents",
                "Incidents whose service account then made a confirming change (e.g. RBAC, secret read).",
                CONFIRMED_KQL, INCIDENT_COLUMNS, "incidents"),
    ]


def _lens(panel: str, title: str, view: str, x: int, y: int, query: str, chart: str, split_field: str | None = None,
          per_time: bool = True) -> tuple[dict, dict]:
    """(panel, dashboard reference) of a Lens XY chart or metric by value over one data view."""
    layer, time_col, count_col, split_col = f"{panel}-layer", f"{panel}-time", f"{panel}-count", f"{panel}-split"
    columns = {count_col: {"dataType": "number", "isBucketed": False, "label": "Count", "operationType": "count",
                           "params": {"emptyAsNull": True}, "scale": "ratio", "sourceField": "___records___"}}
    order = [count_col]
    if per_time:
        columns[time_col] = {"dataType": "date", "isBucketed": True, "label": "@timestamp",
                             "operationType": "date_histogram", "params": {"interval": "auto", "includeEmptyRows": True},
                             "scale": "interval", "sourceField": "@timestamp"}
        order.insert(0, time_col)
    if split_field:
        columns[split_col] = {"dataType": "string", "isBucketed": True, "label": f"Top values of {split_field}",
                              "operationType": "terms", "scale": "ordinal", "sourceField": split_field,
                              "params": {"size": 30, "orderBy": {"type": "column", "columnId": count_col},
                                         "orderDirection": "desc", "otherBucket": True, "missingBucket": False}}
        order.insert(0, split_col)
    if chart == "metric":
        visualization = {"layerId": layer, "layerType": "data", "metricAccessor": count_col}
        vis_type = "lnsMetric"
    else:
        layer_vis = {"accessors": [count_col], "layerId": layer, "layerType": "data", "position": "top",
                     "seriesType": chart, "showGridlines": False, "xAccessor": time_col if per_time else split_col}
        if split_field and per_time:
            layer_vis["splitAccessor"] = split_col
        visualization = {"layers": [layer_vis], "legend": {"isVisible": True, "position": "right"},
                         "preferredSeriesType": chart, "valueLabels": "hide"}
        vis_type = "lnsXY"
    ref_name = f"indexpattern-datasource-layer-{layer}"
    attributes = {
        "title": title, "description": "", "visualizationType": vis_type, "type": "lens",
        "references": [{"id": DATA_VIEWS[view][0], "name": ref_name, "type": "index-pattern"}],
        "state": {"visualization": visualization, "query": {"query": query, "language": "kuery"}, "filters": [],
                  "datasourceStates": {"formBased": {"layers": {layer: {
                      "columns": columns, "columnOrder": order, "incompleteColumns": {}}}}},
                  "internalReferences": [], "adHocDataViews": {}},
    }
    panel_obj = {"type": "lens", "panelIndex": panel, "title": title,
                 "gridData": {"x": x, "y": y, "w": 24, "h": 15, "i": panel},
                 "embeddableConfig": {"attributes": attributes, "enhancements": {}}}
    return panel_obj, {"id": DATA_VIEWS[view][0], "name": f"{panel}:{ref_name}", "type": "index-pattern"}


def dashboard() -> dict:
    panels = [
        _lens("incidents-over-time", "Incidents over time", "incidents", 0, 0, "", "bar_stacked",
              split_field="kubehunt.incident.confirmed"),
        _lens("confirmed-incidents", "Confirmed incidents", "incidents", 24, 0, CONFIRMED_KQL, "metric",
              per_time=False),
        _lens("hunt-matches", "Hunt matches by hunt (audit)", "kubernetes.audit_logs", 0, 15,
              "kubehunt.hunts : *", "bar_stacked", split_field="kubehunt.hunts"),
        _lens("falco-hunt-matches", "Hunt matches by hunt (Falco)", "falco.alerts", 24, 15,
              "kubehunt.hunts : *", "bar_stacked", split_field="kubehunt.hunts"),
        _lens("dead-letters", "Dead letters over time, by stage", "dead_letters", 0, 30, "", "bar_stacked",
              split_field="kubehunt.dead_letter.stage"),
    ]
    return _object("dashboard", DASHBOARD_ID, {
        "title": "kubehunt: overview", "version": 1, "timeRestore": False,
        "description": "Incidents, confirmed incidents, hunt matches per hunt and the dead-letter rate.",
        "kibanaSavedObjectMeta": {"searchSourceJSON": _json({"query": {"query": "", "language": "kuery"},
                                                             "filter": []})},
        "optionsJSON": _json({"hidePanelTitles": False, "syncColors": False, "syncCursor": True,
                              "syncTooltips": False, "useMargins": True}),
        "panelsJSON": _json([p for p, _ in panels])}, [r for _, r in panels])


def render(hunts_dir: str | None = None) -> str:
    """The whole NDJSON export, byte-identical for the same hunts."""
    from transforms.hunts import HuntSettings, load_hunts

    hunts = load_hunts(HuntSettings(hunts_dir=hunts_dir))
    objects = [data_view(key) for key in DATA_VIEWS]
    objects += [saved_search(h) for h in hunts]
    objects += incident_searches()
    objects.append(dashboard())
    summary = {"excludedObjects": [], "excludedObjectsCount": 0, "exportedCount": len(objects),
               "missingRefCount": 0, "missingReferences": []}
    return "".join(_json(o) + "\n" for o in [*objects, summary])


# ---------------------------------------------------------------------------------------------
# kubehunt kibana export | import


def add_parser(sub) -> None:
    kibana = sub.add_parser("kibana", help="Kibana saved objects for the hunts, incidents and dead letters")
    actions = kibana.add_subparsers(dest="kibana_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="print (or --out FILE) the saved objects as import NDJSON")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    export.add_argument("--hunts-dir", metavar="DIR", help="folder of hunt files (default: the shipped ones)")
    imp = actions.add_parser("import", help="import the saved objects into Kibana (overwrite)")
    imp.add_argument("--kibana-url", required=True, metavar="URL", help="Kibana base URL, e.g. https://kibana:5601")
    imp.add_argument("--space", metavar="SPACE", help="Kibana space id (default: the default space)")
    imp.add_argument("--hunts-dir", metavar="DIR", help="folder of hunt files (default: the shipped ones)")
    g = imp.add_argument_group("Kibana authentication (secrets only from the environment or files)")
    g.add_argument("--kibana-username", metavar="USER",
                   help="basic-auth user; the password comes from $KUBEHUNT_KIBANA_PASSWORD or --kibana-password-file")
    g.add_argument("--kibana-password-file", metavar="FILE", help="file holding the basic-auth password")
    g.add_argument("--kibana-api-key-file", metavar="FILE",
                   help="file holding an API key (base64 id:key); default: $KUBEHUNT_KIBANA_API_KEY")
    g.add_argument("--kibana-ca-certs", metavar="FILE", help="CA bundle (PEM) to verify Kibana's certificate")
    g.add_argument("--kibana-verify-certs", action=argparse.BooleanOptionalAction, default=True,
                   help="verify Kibana's TLS certificate (default: on)")
    g.add_argument("--kibana-timeout", type=float, default=60.0, metavar="SECONDS")


def _read_secret(path: str | None, env: str) -> str | None:
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(env) or None


def _auth_header(args) -> dict[str, str]:
    import base64

    from pipeline.options import ConfigError
    for name in ("kibana_password_file", "kibana_api_key_file", "kibana_ca_certs"):
        value = getattr(args, name)
        if value and not os.path.isfile(value):
            raise ConfigError(f"--{name.replace('_', '-')} {value}: no such file")
    api_key = _read_secret(args.kibana_api_key_file, "KUBEHUNT_KIBANA_API_KEY")
    if api_key:
        return {"Authorization": f"ApiKey {api_key}"}
    if args.kibana_username:
        password = _read_secret(args.kibana_password_file, "KUBEHUNT_KIBANA_PASSWORD")
        if password is None:
            raise ConfigError("--kibana-username needs a password: $KUBEHUNT_KIBANA_PASSWORD or --kibana-password-file")
        token = base64.b64encode(f"{args.kibana_username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def import_url(base: str, space: str | None) -> str:
    base = base.rstrip("/")
    return f"{base}{f'/s/{space}' if space else ''}/api/saved_objects/_import?overwrite=true"


def import_objects(args, ndjson: str) -> dict:
    """POST the NDJSON as multipart `file`; returns Kibana's JSON answer. Raises RuntimeError on HTTP errors."""
    import ssl
    import urllib.error
    import urllib.request

    from pipeline.options import ConfigError
    url = args.kibana_url
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--kibana-url {url!r} must start with http:// or https://")
    if "@" in url.split("//", 1)[1].split("/", 1)[0]:
        raise ConfigError("--kibana-url must not carry credentials (they would show in process listings); "
                          "use --kibana-username with $KUBEHUNT_KIBANA_PASSWORD, or an API key file")
    boundary = "kubehunt-saved-objects-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"kubehunt.ndjson\"\r\n"
            f"Content-Type: application/ndjson\r\n\r\n{ndjson}\r\n--{boundary}--\r\n").encode()
    headers = {"kbn-xsrf": "kubehunt", "Content-Type": f"multipart/form-data; boundary={boundary}",
               **_auth_header(args)}
    request = urllib.request.Request(import_url(url, args.space), data=body, headers=headers, method="POST")
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=args.kibana_ca_certs)
        if not args.kibana_verify_certs:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=args.kibana_timeout, context=context) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        detail = err.read()[:2000].decode(errors="replace")
        raise RuntimeError(f"Kibana answered HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(f"Kibana at {url} is unreachable: {getattr(err, 'reason', err)}") from None


def describe_failures(answer: dict) -> list[str]:
    lines = []
    for item in answer.get("errors") or []:
        error = item.get("error") or {}
        why = error.get("type", "error")
        if error.get("message"):
            why += f": {error['message']}"
        for ref in error.get("references") or []:
            why += f" (missing {ref.get('type')} {ref.get('id')})"
        lines.append(f"  {item.get('type')} {item.get('id')} ({item.get('title', item.get('meta', {}).get('title', ''))}): {why}")
    return lines


def cmd_kibana(args, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ndjson = render(getattr(args, "hunts_dir", None))
    if args.kibana_command == "export":
        if args.out:
            Path(args.out).write_text(ndjson)
            print(f"wrote {args.out} ({ndjson.count(chr(10)) - 1} saved objects)", file=sys.stderr)
        else:
            out.write(ndjson)
        return 0
    try:
        answer = import_objects(args, ndjson)
    except RuntimeError as err:
        print(f"kubehunt: error: {err}", file=sys.stderr)
        return 1
    failures = describe_failures(answer)
    if failures or not answer.get("success", False):
        print(f"kubehunt: error: Kibana imported {answer.get('successCount', 0)} objects; "
              f"{len(failures)} failed:", file=sys.stderr)
        print("\n".join(failures), file=sys.stderr)
        return 1
    print(f"imported {answer.get('successCount', 0)} saved objects into {args.kibana_url}"
          f"{f' (space {args.space})' if args.space else ''}", file=out)
    return 0
