"""SigmaHQ's Kubernetes audit rules (../shared/data/detection-rules/sigma), converted with kubehunt's pySigma
pipeline (transforms/sigma_pipeline.py) to Lucene, EQL and ES|QL, fire on the real node exactly on
the events built for them: one test case per rule.

Events come from each rule's own detection (raw audit field names are the Sigma field names): a
trigger with every selection satisfied, and one near miss per field of the main selection with
that field's value changed (or removed, for `'*'`). They go through the real normaliser and sink
(`kubehunt run`). ES|QL: pySigma writes `metadata` without brackets (8.13+); on 8.12 the test uses
the bracketed form, the only change.
"""
from __future__ import annotations

import copy
import re
from datetime import datetime, timezone

import orjson
import pytest
import yaml

from tests import rulegen
from tests.conftest import shared
from tests.helpers import run_cli
from transforms.sigma_pipeline import INDEX, convert

pytestmark = [pytest.mark.elasticsearch]

try:
    SIGMA = sorted(shared("detection-rules", "sigma").glob("*.yml"))
except pytest.skip.Exception as skip:
    pytest.skip(str(skip), allow_module_level=True)

# Bare or exists-style Sigma names -> (raw audit path, value that satisfies `'*'`).
RAW = {"apiGroup": "objectRef.apiGroup", "resource": "objectRef.resource", "namespace": "objectRef.namespace"}
EXISTS = {"hostPath": ("requestObject", {"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}}),
          "capabilities": ("requestObject", {"spec": {"containers": [{"name": "c", "image": "i",
                                                                      "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}})}


def _apply(event: dict, field: str, value) -> None:
    name, _, modifier = field.partition("|")
    if name in EXISTS:
        if value == "*":
            key, body = EXISTS[name]
            event[key] = copy.deepcopy(body)
        return
    if name == "responseStatus.code" and isinstance(value, str) and not value.isdigit():
        event["annotations"]["authorization.k8s.io/decision"] = value.lower()   # the pipeline's reading
        return
    if modifier == "contains":
        value = f"kh{value}kh" if name != "requestURI" else f"/api/v1/namespaces/default/pods/p/exec?command={value}"
    if name == "responseStatus.code":
        value = int(value)
        event["responseStatus"]["code"] = value
        return
    rulegen._set(event, RAW.get(name, name).split("."), value)


def _first(value):
    return value[0] if isinstance(value, list) else value


def scenarios(rule: dict, key: str) -> list[tuple[str, list[dict], bool]]:
    detection = rule["detection"]
    condition = detection["condition"]
    names = [k for k in detection if k != "condition"]
    chosen = []
    for name in names:
        if re.search(rf"1 of {re.escape(name.rsplit('_', 1)[0])}_\*", condition):
            if not any(c.startswith(name.rsplit("_", 1)[0] + "_") for c in chosen):
                chosen.append(name)
        else:
            chosen.append(name)
    hit = rulegen.base_event(f"{key}-hit")
    hit["annotations"]["authorization.k8s.io/decision"] = "allow"
    for name in chosen:
        for field, value in detection[name].items():
            _apply(hit, field, _first(value))
    out = [("hit", [hit], True)]
    main = chosen[0]
    for i, (field, value) in enumerate(detection[main].items()):
        miss = copy.deepcopy(hit)
        miss["auditID"] = f"{key}-miss{i}"
        name = field.split("|")[0]
        if name in EXISTS:
            miss.pop(EXISTS[name][0], None)
        elif name == "responseStatus.code":
            if str(_first(value)).isdigit():
                miss["responseStatus"]["code"] = 200
            else:
                miss["annotations"]["authorization.k8s.io/decision"] = "forbid"
        elif "contains" in field:
            _apply(miss, name, "nothing-to-see")
        else:
            _apply(miss, name, "kh-other")
        out.append((f"{name}-differs", [miss], False))
    return out


CASES = {}
for n, path in enumerate(SIGMA):
    rule = yaml.safe_load(path.read_text())
    CASES[path.stem] = (path, [(label, f"s{n:02d}x{i}-", [{**e, "auditID": f"s{n:02d}x{i}-0"} for e in evs], fire)
                               for i, (label, evs, fire) in enumerate(scenarios(rule, f"s{n:02d}"))])


@pytest.fixture(scope="module")
def sigma_stream(es_url, es, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sigma")
    stream = f"logs-kubernetes.audit_logs-sigma{datetime.now(timezone.utc).strftime('%H%M%S')}"
    lines = [orjson.dumps(e) for _, scen in CASES.values() for _, _, events, _ in scen for e in events]
    (tmp / "audit.log").write_bytes(b"\n".join(lines) + b"\n")
    code = run_cli("run", "--audit", tmp / "audit.log", "--es-url", es_url, "--audit-index", stream,
                   "--falco-index", "h6-sigma-falco-unused", "--no-correlation",
                   "--dead-letter-index", "h6-sigma-dead-letters")
    assert code == 0
    es.indices.refresh(index=stream)
    assert es.count(index=stream)["count"] == len(lines)
    yield stream
    es.options(ignore_status=404).indices.delete_data_stream(name=stream)
    es.options(ignore_status=404).indices.delete(index="h6-sigma-dead-letters,h6-sigma-falco-unused")


def _scope(stream, prefix):
    return {"bool": {"filter": [{"wildcard": {"_index": f".ds-{stream}-*"}},
                                {"prefix": {"kubernetes.audit.auditID": prefix}}]}}


def _fires(es, target, query, scope) -> bool:
    if target == "lucene":
        return es.count(index=INDEX, query={"bool": {"filter": [{"query_string": {"query": query}}, scope]}})["count"] > 0
    if target == "eql":
        return bool(es.eql.search(index=INDEX, query=query, filter=scope)["hits"]["events"])
    query = re.sub(r"(?i)^(from \S+) metadata ([\w, ]+?) \|", r"\1 [METADATA \2] |", query)   # 8.12 syntax
    return bool(es.esql.query(query=query + " | limit 10", filter=scope)["values"])


@pytest.mark.parametrize("stem", list(CASES))
def test_sigma_rule_converts_and_fires_exactly_where_it_should(es, sigma_stream, stem):
    path, scenarios_ = CASES[stem]
    wrong = []
    for target in ("lucene", "eql", "esql"):
        queries = convert(path.read_text(), target)
        assert len(queries) == 1
        for label, prefix, _, should in scenarios_:
            if _fires(es, target, queries[0], _scope(sigma_stream, prefix)) != should:
                wrong.append(f"{target} {label}: {'fired' if not should else 'did not fire'}")
    assert not wrong, f"{stem}: {wrong}"


def test_kubehunt_sigma_convert_prints_the_query(capsys):
    assert run_cli("sigma", "convert", str(SIGMA[0]), "--target", "eql") == 0
    out = capsys.readouterr().out.strip()
    assert out == convert(SIGMA[0].read_text(), "eql")[0] and out.startswith("any where data_stream.dataset")
    assert run_cli("sigma", "convert", "/nonexistent.yml") == 2

