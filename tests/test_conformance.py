"""Conformance with Elastic's own ECS output (its integrations' pipeline-test expectations).

For every input line in ../shared/data/{audit,falco}/elastic that has an expected document in
../shared/data/ecs-expected, every field Elastic sets is one test case: it must be equal in our
document, or be one of the deliberate differences in ``DIFFERENCES`` (docs/ecs.md), whose own check
then asserts what we do instead. A field Elastic sets that is neither equal nor documented fails.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, missing
from transforms.ecs import Normaliser
from transforms.parse import records

CASES_FILES = [
    # (source, input file, expected file)
    ("audit", "audit/elastic/kubernetes-audit_logs-test-audit.log", "kubernetes-audit_logs-test-audit.log-expected.json"),
    ("audit", "audit/elastic/kubernetes-audit_logs-test-kube-audit.log",
     "kubernetes-audit_logs-test-kube-audit.log-expected.json"),
    ("falco", "falco/elastic/falco-alerts-test-falco.log", "falco-alerts-test-falco.log-expected.json"),
    ("falco", "falco/elastic/falco-alerts-test-nopreserve.log", "falco-alerts-test-nopreserve.log-expected.json"),
]

MISSING = object()


def leaves(obj: dict, prefix: str = ""):
    """(dotted path, value) of every leaf; Elastic writes some fields with dotted keys, some nested."""
    for key, value in obj.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from leaves(value, path)
        else:
            yield path, value


def lookup(doc: dict, path: str):
    """Value at a dotted path, trying every split of the path into (possibly dotted) keys."""
    if path in doc:
        return doc[path]
    parts = path.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if isinstance(doc.get(head), dict):
            found = lookup(doc[head], ".".join(parts[i:]))
            if found is not MISSING:
                return found
    return MISSING


# ---------------------------------------------------------------------------------------------
# Deliberate differences: (source, path prefix) -> (reason, check(ours, elastic_value, our_value, case)).
# Each check asserts what we do instead. The reasons are the ones in docs/ecs.md.

def _original_kept_parsed(ours, elastic_value, our_value, case):
    original = json.loads(elastic_value)
    if case["source"] == "falco":
        assert ours["falco"] == original
    elif "protoPayload" in original:
        gke = ours["kubernetes"]["audit"]
        assert {k: gke[k] for k in original} == original, "every GKE key is kept as sent"
    elif "properties" in original:
        inner = original["properties"]["log"]
        inner = json.loads(inner) if isinstance(inner, str) else inner
        assert {k: v for k, v in ours["kubernetes"]["audit"].items() if k != "aks_metadata"} == inner
    else:
        assert ours["kubernetes"]["audit"] == original
    assert our_value is MISSING


def _test_config_tags(ours, elastic_value, our_value, case):
    assert "preserve_original_event" not in (our_value if our_value is not MISSING else [])
    if case["source"] == "falco":
        assert our_value == ours["falco"]["tags"] or (our_value is MISSING and not ours["falco"]["tags"])


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def _ns(value) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time or an epoch number: the oracle for times,
    written with the standard library only (not kubehunt's own parser)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, (int, float)):
        return int(value) * {0: 10**9, 1: 10**6, 2: 10**3}.get(next(i for i, bound in enumerate((1e11, 1e14, 1e17, 1e30))
                                                                 if abs(value) < bound), 1)
    match = _RFC3339.fullmatch(value)
    assert match, f"not an RFC 3339 time: {value!r}"
    seconds, fraction, zone = match.groups()
    moment = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    return int(moment.timestamp()) * 10**9 + int((fraction or "").ljust(9, "0"))


def test_the_time_oracle_itself():
    assert _ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert _ns("1970-01-01T01:00:00+01:00") == 0
    assert _ns("2024-05-07T18:54:19.341081180Z") == 1715108059_341081180
    assert _ns(1715108059341) == 1715108059_341_000_000 and _ns(1715108059) == 1715108059 * 10**9
    assert _ns("23455") == 23455 * 10**9


def _event_time_not_wrapper_time(ours, elastic_value, our_value, case):
    audit = ours["kubernetes"]["audit"]
    assert _ns(our_value) == _ns(audit["requestReceivedTimestamp"])
    assert _ns(our_value) // 10**6 <= _ns(elastic_value) // 10**6


def _nanoseconds_kept(ours, elastic_value, our_value, case):
    assert _ns(our_value) // 10**6 == _ns(elastic_value) // 10**6, "same instant (to the ms)"
    assert len(our_value) > len(elastic_value), "and finer precision than Elastic's milliseconds"


def _ingest_time_is_the_sinks(ours, elastic_value, our_value, case):
    assert our_value is MISSING


def _not_known_to_the_normaliser(ours, elastic_value, our_value, case):
    assert our_value is MISSING


def _annotation_names_by_runtime_field(ours, elastic_value, our_value, case):
    key = case["path"].rsplit(".", 1)[-1].replace("authorization_k8s_io", "authorization.k8s.io")
    annotations = ours["kubernetes"]["audit"]["annotations"]
    assert annotations[key] == elastic_value, "the API server's own key holds Elastic's value"
    assert our_value is MISSING
    runtime = json.loads((Path(__file__).resolve().parent.parent / "mappings" / "templates" / "component" /
                          "kubehunt-audit-mappings.json").read_text())["template"]["mappings"]["runtime"]
    assert case["path"] in runtime, "Elastic's name is a runtime field of the index"


def _gke_event_time(ours, elastic_value, our_value, case):
    audit = ours["kubernetes"]["audit"]
    assert elastic_value == audit["receiveTimestamp"], "Elastic takes Cloud Logging's receive time"
    assert our_value == audit["timestamp"], "we take the API server's own time"


def _gke_grpc_status(ours, elastic_value, our_value, case):
    assert ours["kubernetes"]["audit"]["protoPayload"]["status"]["code"] == elastic_value == 0
    assert our_value == 200 == ours["http"]["response"]["status_code"]


def _gke_monitored_resource(ours, elastic_value, our_value, case):
    assert ours["kubernetes"]["audit"]["resource"]["type"] == elastic_value
    assert our_value is MISSING, "orchestrator.resource.type only ever holds a Kubernetes resource"


def _category_superset(ours, elastic_value, our_value, case):
    assert our_value[: len(elastic_value)] == elastic_value
    extra = our_value[len(elastic_value):]
    assert set(extra) <= {"file", "network"}
    if "file" in extra:
        assert "file" in ours and ours["file"]["path"]


def _falco_epoch_as_date(ours, elastic_value, our_value, case):
    assert _ns(our_value) == _ns(elastic_value), (our_value, elastic_value)


OUTPUT_FIELD_RENAMES = {  # Elastic's path under falco.output_fields -> the key Falco sent
    "client.ip": "fd.cip", "server.ip": "fd.sip", "source.ip": "fd.lip", "destination.ip": "fd.rip",
    "process.parent.pid": "proc.ppid", "process.pid": "proc.pid", "process.session_leader.pid": "proc.sid",
    "process.group_leader.vpid": "proc.vpgid", "container.image.name": "container.image",
}


def _output_fields_as_sent(ours, elastic_value, our_value, case):
    path = case["path"][len("falco.output_fields."):]
    key = OUTPUT_FIELD_RENAMES.get(path, path)
    sent = ours["falco"]["output_fields"]
    assert key in sent, f"Falco's own key {key!r} is kept"
    value = sent[key]
    if key == "evt.time.iso8601" and isinstance(value, int):
        assert value // 1_000_000 == elastic_value, "Elastic cut the nanoseconds to milliseconds"
    elif key == "user.uid":
        assert str(value) == elastic_value
    else:
        assert value == elastic_value


DIFFERENCES = {
    ("audit", "event.original"): ("the record is kept parsed under kubernetes.audit, not also as text",
                                  _original_kept_parsed),
    ("falco", "event.original"): ("the alert is kept parsed under falco, not also as text", _original_kept_parsed),
    ("audit", "tags"): ("Elastic's test config adds preserve_original_event", _test_config_tags),
    ("falco", "tags"): ("Elastic's test config tags; ours are Falco's rule tags", _test_config_tags),
    ("audit", "kubernetes.audit.annotations.authorization_k8s_io/"): (
        "the Event keeps the API server's annotation keys; Elastic's renamed names are runtime fields",
        _annotation_names_by_runtime_field),
    ("audit", "@timestamp"): ("@timestamp is the API server's requestReceivedTimestamp, not the AKS wrapper's time",
                              _event_time_not_wrapper_time),
    ("falco", "@timestamp"): ("nanoseconds kept (date_nanos)", _nanoseconds_kept),
    ("falco", "event.ingested"): ("ingest time is the sink's business, not normalisation's", _ingest_time_is_the_sinks),
    ("falco", "log.file.path"): ("the normaliser sees records, not files (origins are in dead letters)",
                                 _not_known_to_the_normaliser),
    ("falco", "falco.container.mounts"): ("Elastic writes parsed mounts into its copy of the alert; we keep the alert "
                                          "as sent (container.mounts stays in falco.output_fields)",
                                          _not_known_to_the_normaliser),
    ("falco", "falco.output_fields."): ("output_fields kept exactly as Falco sent them (flattened)",
                                       _output_fields_as_sent),
    ("falco", "event.category"): ("file/network added when those ECS field sets are filled", _category_superset),
    ("falco", "process.start"): ("Falco's epoch timestamp as a date, not raw digits", _falco_epoch_as_date),
    ("falco", "process.parent.start"): ("Falco's epoch timestamp as a date, not raw digits", _falco_epoch_as_date),
    ("gke", "kubernetes.audit.requestReceivedTimestamp"): ("GKE: the API server's time, not Cloud Logging's receive time",
                                                           _gke_event_time),
    ("gke", "kubernetes.audit.responseStatus.code"): ("GKE: gRPC status mapped to the HTTP code audit Events carry",
                                                      _gke_grpc_status),
    ("gke", "orchestrator.resource.type"): ("GKE: k8s_cluster is a GCP monitored-resource type, not a Kubernetes "
                                            "resource", _gke_monitored_resource),
}


def _difference(case):
    kinds = [case["source"]] + (["gke"] if case["gke"] else [])
    for kind in reversed(kinds):
        for (src, prefix), entry in DIFFERENCES.items():
            if src == kind and (case["path"] == prefix or (prefix.endswith((".", "/")) and case["path"].startswith(prefix))):
                return entry
    return None


def _cases():
    if not SHARED_DATA.is_dir():
        return [pytest.param(None, id="shared-data-missing")]
    out = []
    for source, input_file, expected_file in CASES_FILES:
        lines = [line for line in (SHARED_DATA / input_file).read_bytes().splitlines() if line.strip()]
        expected = json.loads((SHARED_DATA / "ecs-expected" / expected_file).read_text())["expected"]
        for index, doc in enumerate(expected):
            gke = b"protoPayload" in lines[index]
            for path, value in leaves(doc):
                if value == {}:
                    continue  # an object Elastic emptied: nothing set
                case = {"source": source, "file": input_file, "line": index, "path": path, "value": value, "gke": gke}
                out.append(pytest.param(case, id=f"{Path(input_file).name}:{index}:{path}"))
    return out


@pytest.fixture(scope="module")
def normaliser():
    return Normaliser()


def _our_doc(normaliser, case) -> dict:
    line = [ln for ln in (SHARED_DATA / case["file"]).read_bytes().splitlines() if ln.strip()][case["line"]]
    (record, envelope), = list(records(case["source"], line))
    return normaliser.to_ecs(case["source"], record, envelope)


@pytest.mark.parametrize("case", _cases())
def test_field_matches_elastic_or_is_a_documented_difference(case, normaliser):
    if case is None:
        missing(f"third-party samples not found at {SHARED_DATA}")
    ours = _our_doc(normaliser, case)
    our_value = lookup(ours, case["path"])
    difference = _difference(case)
    if difference is not None:
        reason, check = difference
        check(ours, case["value"], our_value, case)
        return
    if case["value"] is None:
        assert our_value in (MISSING, None), "Elastic sets nothing here"
        return
    assert our_value == case["value"], f"{case['path']}: Elastic {case['value']!r}, ours {our_value!r}"


def test_every_documented_difference_is_in_docs_ecs_md():
    text = (Path(__file__).resolve().parent.parent / "docs" / "ecs.md").read_text()
    for (_, path), _entry in DIFFERENCES.items():
        assert f"`{path.rstrip('.')}" in text, f"{path} is not explained in docs/ecs.md"


def test_every_documented_difference_is_exercised():
    """A stale entry (a difference that no longer occurs) should be removed, not kept as folklore."""
    if not SHARED_DATA.is_dir():
        missing(f"third-party samples not found at {SHARED_DATA}")
    used = {_difference(p.values[0]) for p in _cases()}
    for key, entry in DIFFERENCES.items():
        assert entry in used, f"{key} never applies to Elastic's samples"
