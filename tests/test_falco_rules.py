"""The shipped Falco rules file (mappings/falco/kubehunt_rules.yaml): the playbook's 3 rules and 2 lists.

Checked structurally (loads, every list used is defined, every rule is recognised by a hunt) and, when
Debian's `sysdig` is installed, by compiling each condition with its filter engine (libsinsp, the same
one Falco uses). Falco itself is not in the package registries here, so the Falco-only parts are
expanded as Falco does before compiling: lists become their items, and the stock `container` macro its
definition from Falco's default rules, `(container.id != host)`.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

import mappings
from transforms.ecs import Normaliser
from transforms.hunts import HuntSettings, load_catalogue
from tests.conftest import needs_tool

RULES_FILE = mappings.path("falco", "kubehunt_rules.yaml")
STOCK_MACROS = {"container": "(container.id != host)"}   # from Falco's falco_rules.yaml
SYSDIG = shutil.which("sysdig")


def load_rules():
    items = yaml.safe_load(RULES_FILE.read_text())
    lists = {i["list"]: i["items"] for i in items if "list" in i}
    macros = {i["macro"]: i["condition"] for i in items if "macro" in i}
    rules = [i for i in items if "rule" in i]
    return lists, macros, rules


def referenced_lists(condition: str) -> set[str]:
    """Names used as `in (name)` where the parentheses hold one bare identifier (Falco's list reference)."""
    return set(re.findall(r"\bin\s*\(\s*([A-Za-z_][\w]*)\s*\)", condition))


def expand(condition: str, lists: dict, macros: dict) -> str:
    def list_items(match):
        name = match.group(1)
        return "in (" + ", ".join(lists[name]) + ")" if name in lists else match.group(0)
    out = re.sub(r"\bin\s*\(\s*([A-Za-z_][\w]*)\s*\)", list_items, condition)
    for name, body in {**STOCK_MACROS, **macros}.items():
        out = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", body, out)
    return " ".join(out.split())


def test_rules_file_has_the_playbooks_three_rules_and_two_lists():
    lists, _, rules = load_rules()
    assert lists == {"known_memfd_users": [], "known_debugger_procs": ["gdb", "lldb", "strace", "ltrace"]}
    assert [r["rule"] for r in rules] == ["Fileless execution via memfd in container", "Unexpected ptrace in container",
                                          "Write to sensitive path in container"]
    assert [r["priority"] for r in rules] == ["WARNING", "WARNING", "ERROR"]
    for rule in rules:
        assert {"rule", "desc", "condition", "output", "priority", "tags"} <= set(rule)
        assert "container" in rule["tags"]


def test_every_list_a_rule_uses_is_defined_and_lists_match_the_hunt_defaults():
    lists, macros, rules = load_rules()
    used = set().union(*(referenced_lists(r["condition"]) for r in rules))
    assert used == {"known_memfd_users", "known_debugger_procs"}
    assert used <= set(lists)
    defaults = HuntSettings()
    assert tuple(lists["known_memfd_users"]) == defaults.known_memfd_users
    assert tuple(lists["known_debugger_procs"]) == defaults.known_debugger_procs


def test_the_only_undefined_macro_is_falcos_stock_container():
    lists, macros, rules = load_rules()
    fields = re.compile(r"^[a-z]+\.[\w.\[\]]+$")
    keywords = {"and", "or", "not", "in", "startswith", "true", "false", "=", ">", "<"}
    for rule in rules:
        words = re.findall(r"[A-Za-z_][\w.\[\]]*", re.sub(r'"[^"]*"', "", rule["condition"]))
        bare = {w for w in words if not fields.match(w) and w not in keywords and w not in lists
                and w not in ("memfd_create", "ptrace", "open", "openat")}
        assert bare <= set(macros) | set(STOCK_MACROS), (rule["rule"], bare)


def test_an_alert_from_each_rule_is_recognised_by_its_hunt():
    _, _, rules = load_rules()
    normaliser, catalogue = Normaliser(), load_catalogue(HuntSettings())
    expected = {"Fileless execution via memfd in container": "falco-memfd-fileless-exec",
                "Unexpected ptrace in container": "falco-unexpected-ptrace",
                "Write to sensitive path in container": "falco-sensitive-path-write"}
    for rule in rules:
        alert = {"rule": rule["rule"], "priority": rule["priority"].title(), "output": "x", "source": "syscall",
                 "tags": rule["tags"], "time": "2026-01-15T14:22:00.000000000Z",
                 "output_fields": {"proc.name": "payload", "container.id": "3f2a9c1b7d10", "fd.name": "/etc/shadow"}}
        doc = normaliser.to_ecs("falco", alert)
        assert expected[rule["rule"]] in catalogue.tag(doc)


# ---------------------------------------------------------------------------------------------
# Compile the conditions with a real filter engine (Debian's sysdig: libsinsp, Falco's filter language)

needs_sysdig = needs_tool("sysdig", "`apt-get install -y sysdig`; the filter-engine compile check cannot run")


def sysdig_compile(condition: str) -> str | None:
    """None when the filter compiles, else sysdig's error. sysdig compiles the filter before opening the
    capture, so reading a missing capture file fails *after* compiling: that message means it compiled."""
    proc = subprocess.run([SYSDIG, "-r", "/nonexistent/kubehunt.scap", condition], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if "filter error" in output:
        return output.strip()
    assert "can't open file" in output, output
    return None


@needs_sysdig
def test_sysdig_rejects_a_broken_filter_so_the_check_can_fail():
    assert "unrecognized field" in sysdig_compile("proc.nam = sh")
    assert sysdig_compile("evt.type = ptrace and (container.id != host") is not None


@needs_sysdig
@pytest.mark.parametrize("rule_name", ["Unexpected ptrace in container", "Write to sensitive path in container"])
def test_rule_condition_compiles_with_sysdig(rule_name):
    lists, macros, rules = load_rules()
    rule = next(r for r in rules if r["rule"] == rule_name)
    assert sysdig_compile(expand(rule["condition"], lists, macros)) is None


@needs_sysdig
def test_memfd_rule_compiles_except_for_the_event_type_debians_sysdig_predates():
    """Debian's sysdig 0.29 (libs of early 2022) has no memfd_create event; Falco's current libs do. The
    engine rejects exactly that token, and the rest of the condition (list, macro) compiles."""
    lists, macros, rules = load_rules()
    rule = next(r for r in rules if r["rule"] == "Fileless execution via memfd in container")
    condition = expand(rule["condition"], lists, macros)
    error = sysdig_compile(condition)
    if error is None:
        return   # a newer sysdig knows memfd_create: the whole rule compiled
    assert "unknown event type memfd_create" in error
    assert sysdig_compile(condition.replace("evt.type = memfd_create", "evt.type = execve")) is None
