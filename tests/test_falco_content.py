"""Elastic's Falco integration content finds kubehunt's alerts: the queries and filters of its saved search
"Raw Alert Stream [Logs Falco]" and of its overview dashboard, as written, on the real node.

Source: elastic/integrations packages/falco/kibana/search/falco-f0d52d00-50cb-4b23-8755-c6966a30462b.json
(query `data_stream.dataset : "falco.alerts"` on `logs-*`, columns event.original, process.name,
event.severity, rule.name, sorted by @timestamp) and kibana/dashboard/falco-872f3c48-4d4c-4bf3-a13c-
1250743bf925.json (dashboard filter: match_phrase data_stream.dataset falco.alerts; panel filters
`data_stream.dataset : "falco.alerts" ` and `"@timestamp": * AND data_stream.dataset : "falco.alerts" `,
a terms panel on host.name). The real alerts are Elastic's own Falco samples, plus kubehunt's demo
alerts; audit events written next to them must not show up.
"""
from __future__ import annotations

import pytest

from tests.conftest import shared
from tests.helpers import DEMO, run_cli
from transforms import kql

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]

SAVED_SEARCH = 'data_stream.dataset : "falco.alerts"'
DASHBOARD_FILTER = {"match_phrase": {"data_stream.dataset": "falco.alerts"}}
PANEL_FILTERS = ['data_stream.dataset : "falco.alerts" ', '"@timestamp": * AND data_stream.dataset : "falco.alerts" ']
COLUMNS = ("event.original", "process.name", "event.severity", "rule.name")


@pytest.fixture(scope="module")
def streams(es_url, es, tmp_path_factory):
    ns = "fc" + tmp_path_factory.mktemp("falco").name.replace("-", "").replace("_", "")[-8:]
    names = {"falco": f"logs-falco.alerts-{ns}", "audit": f"logs-kubernetes.audit_logs-{ns}"}
    files = sorted(shared("falco", "elastic").glob("*.log")) + [DEMO / "falco.json"]
    args = ["run", "--es-url", es_url, "--falco", *files, "--audit", DEMO / "audit.log", "--keep-original",
            "--falco-index", names["falco"], "--audit-index", names["audit"], "--no-correlation",
            "--dead-letter-index", f"h6-{ns}-dead-letters"]
    assert run_cli(*args) == 0
    for name in names.values():
        es.indices.refresh(index=name)
    yield names
    for name in names.values():
        es.options(ignore_status=404).indices.delete_data_stream(name=name)
    es.options(ignore_status=404).indices.delete(index=f"h6-{ns}-dead-letters")


def _ours(streams, query):
    # Only this test's data streams (other tests may have written to logs-* on the same node).
    scope = {"bool": {"should": [{"wildcard": {"_index": f".ds-{n}-*"}} for n in streams.values()],
                      "minimum_should_match": 1}}
    return {"bool": {"filter": [query, scope]}}


def test_raw_alert_stream_saved_search_lists_every_alert_with_its_columns(es, streams):
    alerts = es.count(index=streams["falco"])["count"]
    assert alerts > 20
    resp = es.search(index="logs-*", query=_ours(streams, kql.kql_to_dsl(SAVED_SEARCH)), sort=[{"@timestamp": "desc"}],
                     size=200, fields=list(COLUMNS))
    hits = resp["hits"]["hits"]
    assert resp["hits"]["total"]["value"] == alerts == len(hits)
    assert {h["_index"].split("-")[2] for h in hits} == {"falco.alerts"}, "no audit event among them"
    for column in ("event.original", "event.severity", "rule.name"):
        assert all(column in h["fields"] for h in hits), f"{column} missing from some alert"
    # process.name: wherever Falco reported the process (proc.name), as in Elastic's pipeline.
    with_proc = [h for h in hits if (h["_source"]["falco"].get("output_fields") or {}).get("proc.name")]
    assert with_proc and all(h["fields"]["process.name"] == [h["_source"]["falco"]["output_fields"]["proc.name"]]
                             for h in with_proc)
    times = [h["sort"][0] for h in hits]
    assert times == sorted(times, reverse=True)


def test_dashboard_filters_and_panels_count_every_alert(es, streams):
    alerts = es.count(index=streams["falco"])["count"]
    assert es.count(index="logs-*", query=_ours(streams, DASHBOARD_FILTER))["count"] == alerts
    for panel in PANEL_FILTERS:
        assert es.count(index="logs-*", query=_ours(streams, kql.kql_to_dsl(panel)))["count"] == alerts, panel
    # The "by hostname" panel: a terms aggregation on host.name over the filtered alerts.
    agg = es.search(index="logs-*", query=_ours(streams, DASHBOARD_FILTER), size=0,
                    aggs={"hosts": {"terms": {"field": "host.name", "size": 10}}})
    assert sum(b["doc_count"] for b in agg["aggregations"]["hosts"]["buckets"]) == alerts
