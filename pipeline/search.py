"""Terminal search: `kubehunt search HUNT_ID` (a hunt's events) and `kubehunt incidents` (with actions).

    kubehunt search HUNT_ID [--since DATE_MATH] [--until DATE_MATH] [--limit N] [--format table|json]
    kubehunt incidents [--confirmed] [--since DATE_MATH] [--limit N] [--format table|json]

Table: the hunt's analyst fields (its `fields`), newest first. json: one document per line (the whole
stored document), for jq. Both read the indices of `kubehunt run` (`--audit-index`/`--falco-index`/
`--incidents-index`, or `--index`).
"""
from __future__ import annotations

import sys
from typing import TextIO

import orjson

MAX_LIMIT = 10_000  # one search page (index.max_result_window)


def _limit(text: str) -> int:
    import argparse
    value = int(text)
    if not 0 < value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text} must be from 1 to {MAX_LIMIT}")
    return value


def add_parser(sub) -> None:
    from pipeline.options import add_es_arguments

    search = sub.add_parser("search", help="print a hunt's events from Elasticsearch (its analyst fields)")
    search.add_argument("hunt", metavar="HUNT_ID", help="a hunt id or alias (`kubehunt hunts list`)")
    incidents = sub.add_parser("incidents", help="print incidents (alert -> service account -> actions)")
    incidents.add_argument("--confirmed", action="store_true", help="only confirmed incidents")
    for parser in (search, incidents):
        parser.add_argument("--since", metavar="DATE_MATH", help="only after this (e.g. now-24h, 2026-01-15)")
        parser.add_argument("--until", metavar="DATE_MATH", help="only before this")
        parser.add_argument("--limit", type=_limit, default=100, metavar="N", help="at most N (default 100)")
        parser.add_argument("--format", choices=("table", "json"), default="table",
                            help="table (default) or json: one document per line")
        parser.add_argument("--index", metavar="PATTERN", help="index / data stream pattern to search")
        parser.add_argument("--hunts-dir", metavar="DIR", help="folder of hunt files (default: the shipped ones)")
        add_es_arguments(parser)


def _time_filter(args) -> list[dict]:
    bounds = {k: v for k, v in (("gte", args.since), ("lt", args.until)) if v}
    return [{"range": {"@timestamp": bounds}}] if bounds else []


def field_value(doc: dict, dotted: str):
    """The value at a dotted path of a document's `_source`, or None (what a column shows)."""
    value = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return str(value)


def _run(args, index: str, query: dict, limit: int) -> list[dict]:
    from elasticsearch import ApiError
    from elasticsearch import ConnectionError as EsConnectionError

    from pipeline.options import es_settings_from_args
    settings = es_settings_from_args(args)
    client = settings.client()
    try:
        response = client.search(index=index, query=query, size=limit, ignore_unavailable=True,
                                  allow_no_indices=True, sort=[{"@timestamp": {"order": "desc", "unmapped_type": "date"}},
                                                               {"event.id": {"order": "asc", "unmapped_type": "keyword"}}])
    except EsConnectionError:
        raise RuntimeError(f"Elasticsearch at {', '.join(settings.hosts)} is unreachable") from None
    except ApiError as err:
        raise RuntimeError(f"Elasticsearch refused the search: {err}") from None
    finally:
        client.close()
    return [hit["_source"] for hit in response["hits"]["hits"]]


def _print(docs: list[dict], header: list[str], fields: list[str], fmt: str, out: TextIO) -> None:
    from pipeline.report import _table
    if fmt == "json":
        for doc in docs:
            out.write(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode() + "\n")
        return
    _table(header, [[_cell(field_value(d, f)) for f in fields] for d in docs], out)


def cmd_search(args, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from pipeline.options import ConfigError, hunt_settings_from_args
    from pipeline.report import hunt_index
    from transforms.hunts import load_catalogue

    catalogue = load_catalogue(hunt_settings_from_args(args))
    hunt = catalogue.by_id.get(args.hunt)
    if hunt is None:
        raise ConfigError(f"unknown hunt {args.hunt!r}; `kubehunt hunts list` shows them")
    index = hunt_index(args, hunt)
    query = {"bool": {"filter": [{"term": {"kubehunt.hunts": hunt.id}}, *_time_filter(args)]}}
    try:
        docs = _run(args, index, query, args.limit)
    except RuntimeError as err:
        print(f"kubehunt: error: {err}", file=sys.stderr)
        return 1
    _print(docs, [label for label, _ in hunt.fields], [f for _, f in hunt.fields], args.format, out)
    if args.format == "table":
        print(f"\n{len(docs)} events of {hunt.id} in {index}", file=out)
    return 0


INCIDENT_FIELDS = [("time", "@timestamp"), ("service account", "kubehunt.incident.service_account"),
                   ("confirmed", "kubehunt.incident.confirmed"), ("alert", "kubehunt.incident.alert_rule"),
                   ("pod", "kubehunt.incident.pod"), ("actions", "kubehunt.incident.action_count"),
                   ("hunts", "kubehunt.incident.hunts")]


def cmd_incidents(args, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from pipeline.report import _table
    from transforms.elasticsearch import DEFAULT_INDICES

    index = args.index or args.incidents_index or DEFAULT_INDICES["incidents"]
    filters = _time_filter(args)
    if args.confirmed:
        filters.append({"term": {"kubehunt.incident.confirmed": True}})
    try:
        docs = _run(args, index, {"bool": {"filter": filters}}, args.limit)
    except RuntimeError as err:
        print(f"kubehunt: error: {err}", file=sys.stderr)
        return 1
    if args.format == "json":
        _print(docs, [], [], "json", out)
        return 0
    for doc in docs:
        _table([label for label, _ in INCIDENT_FIELDS], [[_cell(field_value(doc, f)) for _, f in INCIDENT_FIELDS]], out)
        actions = field_value(doc, "kubehunt.incident.actions") or []
        if actions:
            _table(["  action time", "verb", "resource", "event id"],
                   [[f"  {a.get('@timestamp', '-')}", _cell(a.get("verb")), _cell(a.get("resource")),
                     _cell(a.get("event_id"))] for a in actions], out)
        print(file=out)
    kind = "confirmed incidents" if args.confirmed else "incidents"
    print(f"{len(docs)} {kind} in {index}", file=out)
    return 0
