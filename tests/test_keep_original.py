"""`kubehunt run --keep-original` through the real sink: `event.original` is the line as read, stored
but not indexed; without the option it is absent. The same run checks that the data_stream fields
follow a non-default destination (`--audit-index logs-kubernetes.audit_logs-<ns>`)."""
from __future__ import annotations

import orjson
import pytest

from tests.helpers import DEMO, read_ndjson, run_cli, run_to_dir

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]


def test_keep_original_stores_each_line_in_event_original(es_url, es, unique_name, tmp_path):
    audit = f"logs-kubernetes.audit_logs-o{unique_name}"
    falco = f"logs-falco.alerts-o{unique_name}"
    try:
        code = run_cli("run", "--audit", DEMO / "audit.log", "--falco", DEMO / "falco.json", "--es-url", es_url,
                       "--audit-index", audit, "--falco-index", falco, "--no-correlation",
                       "--dead-letter-index", f"h6-{unique_name}-dead-letters", "--keep-original")
        assert code == 0
        for stream, path in ((audit, DEMO / "audit.log"), (falco, DEMO / "falco.json")):
            es.indices.refresh(index=stream)
            lines = {ln.decode() for ln in path.read_bytes().splitlines() if ln.strip()}
            hits = es.search(index=stream, size=1000)["hits"]["hits"]
            assert hits and {h["_source"]["event"]["original"] for h in hits} <= lines
            for h in hits[:5]:
                original = orjson.loads(h["_source"]["event"]["original"])
                kept = h["_source"]["kubernetes"]["audit"] if stream == audit else h["_source"]["falco"]
                assert original.get("auditID", original.get("uuid")) == kept.get("auditID", kept.get("uuid"))
            namespace = f"o{unique_name}"
            assert {h["_source"]["data_stream"]["namespace"] for h in hits} == {namespace}
            # Not indexed (index: false): a query on it is refused, as on Elastic's integration.
            mapping = es.indices.get_field_mapping(index=stream, fields="event.original")
            body = next(iter(mapping.values()))["mappings"]["event.original"]["mapping"]["original"]
            assert body["index"] is False and body["doc_values"] is False
    finally:
        for stream in (audit, falco):
            es.options(ignore_status=404).indices.delete_data_stream(name=stream)
        es.options(ignore_status=404).indices.delete(index=f"h6-{unique_name}-dead-letters")


def test_without_keep_original_there_is_no_event_original(tmp_path):
    code, _, out = run_to_dir(tmp_path, "--audit", DEMO / "audit.log", "--no-correlation")
    docs = read_ndjson(out, "events")
    assert code == 0 and docs
    assert not any("original" in d["event"] for d in docs)
