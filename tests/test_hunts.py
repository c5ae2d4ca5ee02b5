"""The hunt catalogue: every hunt file's examples as their own cases, loading errors, tagging behaviour."""
from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import mappings
from transforms.ecs import Normaliser
from transforms.hunts import (Catalogue, HuntError, HuntSettings, compile_expression, compile_hunt,
                              load_catalogue, load_hunts, parse_hunt)

HUNTS = load_hunts()
SETTINGS = HuntSettings()
CATALOGUE = load_catalogue(SETTINGS)
NORMALISER = Normaliser()
PLAYBOOK_IDS = {"privileged-pod-create", "pod-exec", "rbac-modification", "secret-access-unexpected-sa",
                "falco-memfd-fileless-exec", "falco-unexpected-ptrace", "falco-sensitive-path-write"}

CASES = [pytest.param(hunt, event, kind == "match", id=f"{hunt.id}:{kind}[{i}]")
         for hunt in HUNTS
         for kind in ("match", "no_match")
         for i, event in enumerate(hunt.example_events(kind))]


def tag_raw(source: str, raw: dict, catalogue: Catalogue = CATALOGUE) -> tuple[dict, list[str]]:
    doc = NORMALISER.to_ecs(source, raw)
    return doc, catalogue.tag(doc)


@pytest.mark.parametrize(("hunt", "event", "expected"), CASES)
def test_hunt_example(hunt, event, expected):
    doc, ids = tag_raw(hunt.raw_source, event)
    assert (hunt.id in ids) is expected
    if expected:
        assert hunt.id in doc["kubehunt"]["hunts"]
        assert doc["event"]["risk_score"] >= hunt.risk_score
        assert hunt.mitre.technique_id in doc["threat"]["technique"]["id"]
    assert "hunt_errors" not in doc.get("kubehunt", {})


def test_catalogue_discovers_every_hunt_file():
    files = sorted(p.stem for p in mappings.path("hunts").glob("*.yaml"))
    assert [h.id for h in HUNTS] == files
    assert PLAYBOOK_IDS <= set(files)
    assert len(files) - len(PLAYBOOK_IDS) >= 10


def test_every_hunt_has_match_and_no_match_examples_and_analyst_fields():
    for hunt in HUNTS:
        assert hunt.example_events("match") and hunt.example_events("no_match"), hunt.id
        assert hunt.fields and hunt.fields[0] == ("time", "@timestamp"), hunt.id
        assert hunt.ranking, hunt.id


def test_hunt_example_index_keys_never_hide_a_match():
    """The resource index is an optimisation only: evaluating every hunt on every example gives the same ids."""
    for hunt in HUNTS:
        for kind in ("match", "no_match"):
            for event in hunt.example_events(kind):
                doc = NORMALISER.to_ecs(hunt.raw_source, event)
                brute = sorted(c.hunt.id for c in CATALOGUE.hunts
                               if c.hunt.source == doc["event"]["dataset"] and c.predicate(doc))
                assert sorted(CATALOGUE.tag(doc)) == brute


# ---------------------------------------------------------------------------------------------
# Loading errors name the file, the line and the reason

def _write(tmp_path: Path, name: str, mutate) -> Path:
    data = yaml.safe_load(mappings.path("hunts", "pod-exec.yaml").read_text())
    mutate(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("hypothesis"), "missing required key 'hypothesis'"),
    (lambda d: d.update(severity="urgent"), "severity: 'urgent' is not one of"),
    (lambda d: d.update(risk_score=140), "risk_score: must be a number from 0 to 100"),
    (lambda d: d.update(source="syslog"), "source: 'syslog' is not one of"),
    (lambda d: d["mitre"]["technique"].update(id="X1609"), "technique id 'X1609'"),
    (lambda d: d["examples"].update(no_match=[]), "`no_match` must be a non-empty list"),
    (lambda d: d.update(colour="red"), "colour: unknown key"),
    (lambda d: d.update(match="kubernetes.audit.verb === 'get'"), "match: syntax error"),
    (lambda d: d.update(match="__import__('os').system('id')"), "only plain calls of registered functions"),
    (lambda d: d.update(match="__import__('os')"), "unknown function '__import__'"),
    (lambda d: d.update(match="kubernetes.audit.verb.upper() == 'GET'"), "only plain calls"),
    (lambda d: d.update(match="process.name in setting('known_cats')"), "unknown setting 'known_cats'"),
    (lambda d: d.update(match="any(any(x for x in y) for y in z)"), "nested any()/all()"),
    (lambda d: d.update(match="matches(url.original, '[')"), "bad regular expression"),
    (lambda d: d.update(id="other-id"), "differs from the file name"),
])
def test_malformed_hunt_fails_at_load_with_file_and_reason(tmp_path, mutate, message):
    path = _write(tmp_path, "broken-hunt", mutate)
    with pytest.raises(HuntError) as err:
        load_catalogue(HuntSettings(hunts_dir=str(tmp_path)))
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_error_line_points_at_the_offending_key(tmp_path):
    path = _write(tmp_path, "bad-severity", lambda d: d.update(severity="urgent"))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if text.startswith("severity:"))
    with pytest.raises(HuntError, match=rf"{path}:{line}: severity"):
        parse_hunt(path)


def test_duplicate_alias_is_refused(tmp_path):
    _write(tmp_path, "one-hunt", lambda d: d.update(aliases=["same"]))
    _write(tmp_path, "two-hunt", lambda d: d.update(aliases=["same"]))
    with pytest.raises(HuntError, match="already used"):
        load_catalogue(HuntSettings(hunts_dir=str(tmp_path)))


# ---------------------------------------------------------------------------------------------
# Expression semantics

def _eval(expr: str, doc: dict, settings: HuntSettings = SETTINGS) -> bool:
    predicate, _ = compile_expression(expr, "test", settings)
    return predicate(doc)


def test_json_true_is_not_the_number_one():
    assert _eval("a.b == True", {"a": {"b": True}})
    assert not _eval("a.b == True", {"a": {"b": 1}})
    assert not _eval("a.b == True", {"a": {"b": "true"}})
    assert not _eval("a.b == 1", {"a": {"b": True}})


def test_missing_fields_never_match_comparisons():
    assert not _eval("a.b == 'x'", {})
    assert not _eval("a.b < 3", {})
    assert not _eval("a.b in ('x', 'y')", {})
    assert _eval("a.b not in ('x', 'y')", {})
    assert not _eval("any(c.p == True for c in a.list)", {"a": {"list": "not a list"}})


def test_index_keys_come_from_the_resource_conjunct():
    _, keys = compile_expression("kubernetes.audit.objectRef.resource in ('pods', 'nodes') and x == 1", "t", SETTINGS)
    assert keys == {"pods", "nodes"}
    _, keys = compile_expression("kubernetes.audit.objectRef.resource == 'pods' or x == 1", "t", SETTINGS)
    assert keys is None


def _leaves(node: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        out |= _leaves(value, f"{path}.") if isinstance(value, dict) else {path}
    return out


def test_the_tagger_writes_only_the_fields_the_templates_type():
    from transforms.hunts import TAGGED_FIELDS

    written = set()
    for hunt in HUNTS:
        for event in hunt.example_events("match"):
            doc = NORMALISER.to_ecs(hunt.raw_source, event)
            before = _leaves(doc)
            CATALOGUE.tag(doc)
            written |= _leaves(doc) - before
    assert written and written <= set(TAGGED_FIELDS), written - set(TAGGED_FIELDS)


def test_verb_conjuncts_index_hunts_so_reads_skip_write_hunts():
    rbac = next(c for c in CATALOGUE.hunts if c.hunt.id == "rbac-modification")
    assert rbac.verb_keys == {"create", "update", "patch", "delete", "deletecollection"}
    read = {"event": {"dataset": "kubernetes.audit_logs"},
            "kubernetes": {"audit": {"verb": "get", "objectRef": {"resource": "clusterrolebindings"}}}}
    assert rbac not in CATALOGUE.candidates(read)
    write = {"event": {"dataset": "kubernetes.audit_logs"},
             "kubernetes": {"audit": {"verb": "patch", "objectRef": {"resource": "clusterrolebindings"}}}}
    assert rbac in CATALOGUE.candidates(write)


# ---------------------------------------------------------------------------------------------
# Tagging

def _secret_read(user: str, impersonated: str | None = None) -> dict:
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "t-1", "stage": "ResponseComplete",
          "verb": "get", "user": {"username": user}, "sourceIPs": ["10.0.0.1"],
          "objectRef": {"resource": "secrets", "namespace": "shop", "name": "db"},
          "responseStatus": {"code": 200}, "requestReceivedTimestamp": "2026-01-15T14:00:00.000000Z"}
    if impersonated:
        ev["impersonatedUser"] = {"username": impersonated}
    return ev


def test_secret_read_by_cert_manager_is_not_a_hunt():
    _, ids = tag_raw("audit", _secret_read("system:serviceaccount:cert-manager:cert-manager-cainjector"))
    assert "secret-access-unexpected-sa" not in ids


def test_secret_reader_exclusions_are_configurable():
    event = _secret_read("system:serviceaccount:backup:velero")
    assert "secret-access-unexpected-sa" in tag_raw("audit", event)[1]
    custom = load_catalogue(HuntSettings(secret_reader_exclusions=("velero",)))
    assert "secret-access-unexpected-sa" not in tag_raw("audit", event, custom)[1]


def test_secret_read_as_a_service_account_through_impersonation_is_a_hunt():
    _, ids = tag_raw("audit", _secret_read("alice", impersonated="system:serviceaccount:shop:web"))
    assert "secret-access-unexpected-sa" in ids and "user-impersonation" in ids


def test_service_accounts_group_name_is_not_a_service_account():
    _, ids = tag_raw("audit", _secret_read("system:serviceaccounts:shop:web"))
    assert "secret-access-unexpected-sa" not in ids


def _falco(rule: str, proc: str) -> dict:
    return {"rule": rule, "priority": "Warning", "output": "x", "source": "syscall", "tags": ["container"],
            "time": "2026-01-15T14:00:00.000000000Z",
            "output_fields": {"proc.name": proc, "container.id": "abc", "evt.type": "ptrace"}}


def test_falco_lists_are_configurable():
    alert = _falco("Unexpected ptrace in container", "frida")
    assert "falco-unexpected-ptrace" in tag_raw("falco", alert)[1]
    tuned = load_catalogue(HuntSettings(known_debugger_procs=("gdb", "frida")))
    assert "falco-unexpected-ptrace" not in tag_raw("falco", alert, tuned)[1]
    memfd = _falco("Fileless execution via memfd in container", "java")
    assert "falco-memfd-fileless-exec" in tag_raw("falco", memfd)[1]
    tuned = load_catalogue(HuntSettings(known_memfd_users=("java",)))
    assert "falco-memfd-fileless-exec" not in tag_raw("falco", memfd, tuned)[1]


def test_risk_score_is_the_max_over_matching_hunts_and_threat_lists_every_match():
    raw = next(h for h in HUNTS if h.id == "cluster-admin-binding").example_events("match")[0]
    doc, ids = tag_raw("audit", raw)
    assert set(ids) == {"cluster-admin-binding", "rbac-modification"}
    by_id = {h.id: h for h in HUNTS}
    assert doc["event"]["risk_score"] == max(by_id[i].risk_score for i in ids)
    assert set(doc["threat"]["tactic"]["id"]) == {by_id[i].mitre.tactic_id for i in ids}
    assert doc["threat"]["framework"] == "MITRE ATT&CK"


def test_event_matching_nothing_gets_no_hunt_fields():
    doc, ids = tag_raw("audit", {**_secret_read("alice"), "verb": "watch"})
    assert ids == [] and "hunts" not in doc.get("kubehunt", {}) and "risk_score" not in doc["event"]


def test_a_hunt_that_raises_never_loses_the_event_and_is_recorded():
    good = compile_hunt(next(h for h in HUNTS if h.id == "secret-access-unexpected-sa"), SETTINGS)

    def explode(doc):
        raise RuntimeError("boom")
    broken = replace(compile_hunt(next(h for h in HUNTS if h.id == "forbidden-request"), SETTINGS), predicate=explode)
    catalogue = Catalogue((broken, good))
    doc, ids = tag_raw("audit", _secret_read("system:serviceaccount:shop:web"), catalogue)
    assert ids == ["secret-access-unexpected-sa"]
    assert doc["kubehunt"]["hunt_errors"] == ["forbidden-request: RuntimeError: boom"]


def test_settings_and_catalogue_source_are_picklable_for_workers():
    settings = HuntSettings(known_memfd_users=("java",))
    assert pickle.loads(pickle.dumps(settings)) == settings


# ---------------------------------------------------------------------------------------------
# The model loader, confirming hunts, tunable lists

def test_nested_error_names_the_nested_key_and_its_own_line(tmp_path):
    path = _write(tmp_path, "bad-technique", lambda d: d["mitre"]["technique"].update(id="X1609"))
    text = path.read_text().splitlines()
    line = next(i for i, t in enumerate(text, start=1) if "X1609" in t)
    with pytest.raises(HuntError, match=rf"^{path}:{line}: mitre.technique: technique id 'X1609'"):
        parse_hunt(path)
    path = _write(tmp_path, "bad-example-key", lambda d: d["examples"].update(maybe=[{}]))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), start=1) if t.strip().startswith("maybe:"))
    with pytest.raises(HuntError, match=rf"^{path}:{line}: examples.maybe: unknown key"):
        parse_hunt(path)


def test_hunts_are_frozen_dataclasses():
    hunt = HUNTS[0]
    with pytest.raises(AttributeError):
        hunt.title = "changed"  # type: ignore[misc]


def test_confirming_hunts_come_from_the_hunt_files():
    flagged = {h.id for h in HUNTS if yaml.safe_load(Path(h.file).read_text()).get("confirms_incident") is True}
    assert CATALOGUE.confirming == flagged == {"rbac-modification", "secret-access-unexpected-sa"}


def test_the_expression_compiler_never_evaluates_or_executes_text():
    import transforms.hunts.expression as expression
    import ast as pyast
    tree = pyast.parse(Path(expression.__file__).read_text())
    called = {n.func.id for n in pyast.walk(tree) if isinstance(n, pyast.Call) and isinstance(n.func, pyast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr"}, called
    # Paths of every depth the getters special-case, and beyond.
    doc = {"a": {"b": {"c": {"d": {"e": {"f": {"g": 7}}}}}}}
    for path in ["a.b.c.d.e.f.g", "a.b.c.d.e.f", "a.b.c.d.e", "a.b.c.d", "a.b.c", "a.b"]:
        assert compile_expression(f"exists({path})", "t", SETTINGS)[0](doc), path
        assert not compile_expression(f"exists({path}.zz)", "t", SETTINGS)[0](doc), path
    assert compile_expression("a.b.c.d.e.f.g == 7", "t", SETTINGS)[0](doc)
    assert not compile_expression("exists(a.b.c.d.e.f.g.h)", "t", SETTINGS)[0](doc)


def test_hunt_list_overrides_a_declared_list_and_unknown_names_are_refused():
    assert SETTINGS.secret_reader_exclusions == ("cert-manager", "vault", "external-secrets")
    assert HuntSettings(lists={"known_memfd_users": ("java",)}) == HuntSettings(known_memfd_users=("java",))
    with pytest.raises(HuntError, match="unknown hunt list 'known_cats'"):
        load_catalogue(HuntSettings(known_cats=("tom",)))


def test_cli_hunt_list_and_its_old_aliases_reach_the_settings():
    import argparse

    from pipeline.options import add_hunt_arguments, hunt_settings_from_args
    parser = argparse.ArgumentParser()
    add_hunt_arguments(parser)
    args = parser.parse_args(["--hunt-list", "known_memfd_users=java,node", "--known-debugger-procs", "gdb,frida"])
    settings = hunt_settings_from_args(args)
    assert settings.override("known_memfd_users") == ("java", "node")
    assert settings.known_debugger_procs == ("gdb", "frida")
    assert settings.secret_reader_exclusions == ("cert-manager", "vault", "external-secrets")


def test_unknown_hunt_list_name_is_a_configuration_error_naming_the_option(capsys):
    from pipeline.cli import main
    assert main(["hunts", "list", "--hunt-list", "known_cats=tom"]) == 2
    err = capsys.readouterr().err
    assert "--hunt-list" in err and "known_cats" in err
