"""Analyst commands: `kubehunt hunts list|test` and `kubehunt report HUNT_ID --top N`.

`report` is the playbook's `... | sort | uniq -c | sort -rn | head -30`, done properly: a terms
aggregation (multi_terms for several fields) over the hunt's ranking fields, on the events tagged with the
hunt (`kubehunt.hunts`), in the hunt's data streams. The playbook's version never groups, because every
projected line carries its own timestamp; ours counts e.g. (account, verb, namespace) for secret access.
"""
from __future__ import annotations

import sys
from typing import TextIO
from transforms.sources import ALL as SOURCE_REGISTRY

INDEX_PATTERNS = {src.dataset: src.index_pattern for src in SOURCE_REGISTRY}
MISSING = "-"


def _settings(args):
    from pipeline.options import hunt_settings_from_args
    from transforms.hunts import HuntSettings

    if hasattr(args, "hunt_lists"):
        return hunt_settings_from_args(args)
    return HuntSettings(hunts_dir=getattr(args, "hunts_dir", None))


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)


# ---------------------------------------------------------------------------------------------
# kubehunt hunts list | test


def run_examples(settings) -> list[tuple[str, bool, str]]:
    """(case id `hunt:kind[i]`, passed, detail) for every example of every hunt."""
    from transforms.ecs import NormaliseError, Normaliser
    from transforms.hunts import load_catalogue

    catalogue = load_catalogue(settings)
    normaliser = Normaliser()
    results = []
    for compiled in catalogue.hunts:
        hunt = compiled.hunt
        for kind in ("match", "no_match"):
            for i, event in enumerate(hunt.example_events(kind)):
                case = f"{hunt.id}:{kind}[{i}]"
                try:
                    doc = normaliser.to_ecs(hunt.raw_source, event)
                except NormaliseError as err:
                    results.append((case, False, f"example does not normalise: {err}"))
                    continue
                ids = catalogue.tag(doc)
                errors = doc.get("kubehunt", {}).get("hunt_errors", [])
                ok = (hunt.id in ids) == (kind == "match") and not errors
                detail = "; ".join(errors) if errors else ("matched" if hunt.id in ids else "no match")
                results.append((case, ok, detail))
    return results


def cmd_hunts(args, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from transforms.hunts import load_hunts

    settings = _settings(args)
    if args.hunts_command == "list":
        hunts = load_hunts(settings)
        _table(["id", "title", "severity", "risk", "source", "mitre"],
               [[h.id, h.title, h.severity, f"{h.risk_score:g}", h.source, h.mitre.technique_id] for h in hunts], out)
        print(f"\n{len(hunts)} hunts", file=out)
        from transforms.hunts import resolve_lists
        lists = resolve_lists(hunts, settings)
        if lists:
            print("\ntunable lists (--hunt-list NAME=a,b):", file=out)
            for name, values in sorted(lists.items()):
                print(f"  {name} = {','.join(values) or '(empty)'}", file=out)
        return 0
    results = run_examples(settings)
    failed = [r for r in results if not r[1]]
    for case, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {case}  ({detail})", file=out)
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed", file=out)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# kubehunt report HUNT_ID


REQUEST_ID = "kubernetes.audit.auditID"  # one API request, whatever the number of stages logged


def report_query(hunt, top: int, since: str | None, field_types: dict[str, str]) -> dict:
    """The search body: the hunt's events, aggregated over its ranking fields, top `top` by count.

    Audit hunts count requests (distinct auditID, when the index has the field), not log lines."""
    filters: list[dict] = [{"term": {"kubehunt.hunts": hunt.id}}]
    if since:
        filters.append({"range": {"@timestamp": {"gte": since}}})
    fields = list(hunt.ranking)

    def term(field: str) -> dict:
        spec = {"field": field}
        # `missing` must have the field's type; a placeholder only fits keyword fields.
        if field_types.get(field, "keyword") in ("keyword", "constant_keyword", "wildcard"):
            spec["missing"] = MISSING
        return spec
    if len(fields) == 1:
        agg = {"terms": {**term(fields[0]), "size": top, "shard_size": max(top * 5, 100)}}
    else:
        agg = {"multi_terms": {"terms": [term(f) for f in fields], "size": top, "shard_size": max(top * 5, 100)}}
    aggs = {"ranking": agg}
    if hunt.source == "kubernetes.audit_logs" and REQUEST_ID in field_types:
        requests = {"cardinality": {"field": REQUEST_ID, "precision_threshold": 40000}}
        kind = next(iter(agg))
        agg[kind]["order"] = [{"requests": "desc"}, {"_key": "asc"}]
        agg["aggs"] = {"requests": requests}
        aggs["requests"] = requests
    return {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": filters}}, "aggs": aggs}


def report_rows(hunt, response: dict) -> list[list[str]]:
    rows = []
    for bucket in response["aggregations"]["ranking"]["buckets"]:
        keys = bucket["key"] if isinstance(bucket["key"], list) else [bucket["key"]]
        values = []
        for field, key in zip(hunt.ranking, keys):
            if field == "orchestrator.namespace" and key == MISSING:
                key = "cluster"   # the playbook's `.objectRef.namespace // "cluster"`
            values.append(str(key))
        count = bucket["requests"]["value"] if "requests" in bucket else bucket["doc_count"]
        rows.append([str(count), *values])
    return rows


def run_report(client, hunt, index: str, top: int = 30, since: str | None = None) -> tuple[int, list[list[str]]]:
    """(requests tagged with the hunt (events, where requests cannot be told apart), ranking rows
    [count, value...]) from Elasticsearch."""
    caps = client.field_caps(index=index, fields=[*hunt.ranking, REQUEST_ID], ignore_unavailable=True,
                             allow_no_indices=True)
    field_types = {f: next(iter(types)) for f, types in caps.get("fields", {}).items() if types}
    response = client.search(index=index, ignore_unavailable=True, allow_no_indices=True,
                             **report_query(hunt, top, since, field_types))
    if "requests" in response.get("aggregations", {}):
        return response["aggregations"]["requests"]["value"], report_rows(hunt, response)
    return response["hits"]["total"]["value"], report_rows(hunt, response)


def hunt_index(args, hunt) -> str:
    """--index, else the source's destination when --audit-index / --falco-index was given, else the
    pattern of the source's data streams."""
    from transforms.elasticsearch import DEFAULT_INDICES
    if getattr(args, "index", None):
        return args.index
    from transforms.sources import by_dataset
    source = by_dataset(hunt.source).name
    chosen = getattr(args, f"{source}_index", None)
    if chosen and chosen != DEFAULT_INDICES[source]:
        return chosen
    return INDEX_PATTERNS[hunt.source]


def cmd_report(args, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from elasticsearch import ApiError
    from elasticsearch import ConnectionError as EsConnectionError

    from pipeline.options import ConfigError, es_settings_from_args
    from transforms.hunts import load_catalogue

    catalogue = load_catalogue(_settings(args))
    hunt = catalogue.by_id.get(args.hunt)
    if hunt is None:
        raise ConfigError(f"unknown hunt {args.hunt!r}; `kubehunt hunts list` shows them "
                          f"({', '.join(sorted(catalogue.by_id))})")
    if args.top <= 0:
        raise ConfigError("--top must be a positive number")
    settings = es_settings_from_args(args)
    index = hunt_index(args, hunt)
    client = settings.client()
    try:
        total, rows = run_report(client, hunt, index, args.top, args.since)
    except EsConnectionError:
        print(f"kubehunt: error: Elasticsearch at {', '.join(settings.hosts)} is unreachable", file=sys.stderr)
        return 1
    except ApiError as err:
        print(f"kubehunt: error: Elasticsearch refused the report query: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    labels = {field: label for label, field in hunt.fields}
    unit = "requests" if hunt.source == "kubernetes.audit_logs" else "events"
    print(f"{hunt.id}: {hunt.title}\n{total} tagged {unit} in {index}"
          f"{f' since {args.since}' if args.since else ''}; top {args.top} by "
          f"({', '.join(labels.get(f, f) for f in hunt.ranking)})\n", file=out)
    _table(["count", *(labels.get(f, f) for f in hunt.ranking)], rows, out)
    return 0
