"""Destination index names by Elasticsearch's rules, at their edges: the exact reason given for each
kind of bad name, the 255-byte limit counted in bytes (not characters), and the names just inside."""
from __future__ import annotations

import pytest

from pipeline.options import ConfigError
from pipeline.validate import index_name_problem, validate_destinations
from transforms.elasticsearch import EsSettings


@pytest.mark.parametrize(("name", "problem"), [
    ("", "is empty"),
    ("_all", "'_all' is not a concrete index"),
    (".", "'.' is not a concrete index"),
    ("..", "'..' is not a concrete index"),
    ("logs-*", "'logs-*' holds wildcards/date math '*' that a destination index cannot have"),
    ("a?b", "'a?b' holds wildcards/date math '?' that a destination index cannot have"),
    ("<x-{now/d}>", "'<x-{now/d}>' holds wildcards/date math '/<>' that a destination index cannot have"),
    ("a b,c", "'a b,c' holds characters ' ,' that a destination index cannot have"),
    ('a"b|c\\d#e:f', "'a\"b|c\\\\d#e:f' holds characters '\"#:\\\\|' that a destination index cannot have"),
    ("Audit", "'Audit' must be lowercase"),
    ("-audit", "'-audit' must not start with '-', '_' or '+'"),
    ("_audit", "'_audit' must not start with '-', '_' or '+'"),
    ("+audit", "'+audit' must not start with '-', '_' or '+'"),
])
def test_each_bad_name_is_refused_with_its_reason(name, problem):
    assert index_name_problem(name) == problem


def test_the_length_limit_is_255_bytes():
    assert index_name_problem("x" * 255) is None
    assert index_name_problem("x" * 256) == f"{'x' * 40!r}... is longer than 255 bytes"
    # 128 two-byte characters: 128 characters but 256 bytes.
    assert index_name_problem("é" * 127 + "x") is None
    assert index_name_problem("é" * 128) == f"{'é' * 40!r}... is longer than 255 bytes"


@pytest.mark.parametrize("name", ["a", "a-", "a_b", "a+b", "a.b", "...", "x-_+.", "kubehunt-incidents", "0"])
def test_names_just_inside_the_rules_are_accepted(name):
    assert index_name_problem(name) is None


def settings(**indices) -> EsSettings:
    base = {"audit": "a-audit", "falco": "a-falco", "incidents": "a-incidents", "dead_letters": "a-dead"}
    return EsSettings(indices=tuple({**base, **indices}.items()))


def test_four_distinct_ordinary_names_pass():
    validate_destinations(settings())


def test_a_bad_name_is_refused_naming_its_option():
    with pytest.raises(ConfigError) as err:
        validate_destinations(settings(dead_letters="Dead"))
    assert str(err.value) == "--dead-letter-index: 'Dead' must be lowercase"


def test_an_index_caught_by_another_destinations_template_names_both_options():
    with pytest.raises(ConfigError) as err:
        validate_destinations(settings(incidents="logs-kubernetes.audit_logs-incidents"))
    message = str(err.value)
    assert message.startswith("--incidents-index 'logs-kubernetes.audit_logs-incidents' matches the index "
                              "template of --audit-index (")
    assert message.endswith("): it would get the wrong mappings")


def test_an_event_index_matching_its_own_template_is_fine():
    validate_destinations(settings(audit="logs-kubernetes.audit_logs-prod", falco="logs-falco.alerts-prod"))
