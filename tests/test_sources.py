"""`transforms.sources`: one registry states each source's identity; the modules that used to restate it read it."""
from __future__ import annotations

import dataclasses

import pytest

import mappings
from transforms import sources
from transforms.ecs import MAPPING_FILES, load_mapping
from transforms.elasticsearch import DEFAULT_INDICES
from transforms.records import DATASETS, SOURCES


def test_audit_and_falco_are_the_known_sources_with_their_data_streams():
    assert [(s.name, s.dataset, s.default_index, s.index_pattern) for s in sources.ALL] == [
        ("audit", "kubernetes.audit_logs", "logs-kubernetes.audit_logs-default", "logs-kubernetes.audit_logs-*"),
        ("falco", "falco.alerts", "logs-falco.alerts-default", "logs-falco.alerts-*")]


def test_lookup_by_name_and_by_dataset_and_unknown_names_the_known_ones():
    assert sources.source("falco") is sources.by_dataset("falco.alerts") is sources.FALCO_SOURCE
    with pytest.raises(KeyError, match="unknown source 'k8s' .known: audit, falco"):
        sources.source("k8s")


def test_a_source_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        sources.AUDIT_SOURCE.dataset = "x"


def test_records_ecs_and_elasticsearch_read_the_registry():
    assert SOURCES == sources.NAMES
    assert DATASETS == {s.name: s.dataset for s in sources.ALL}
    assert MAPPING_FILES == {s.name: s.mapping_file for s in sources.ALL}
    assert {name: DEFAULT_INDICES[name] for name in sources.NAMES} == {s.name: s.default_index for s in sources.ALL}


@pytest.mark.parametrize("src", sources.ALL, ids=lambda s: s.name)
def test_each_mapping_file_normalises_to_its_sources_dataset(src):
    assert mappings.path("ecs", src.mapping_file).is_file()
    assert load_mapping(src.name).dataset == src.dataset


def test_index_pattern_matches_the_index_template():
    import json
    for src in sources.ALL:
        body = json.loads(mappings.path("templates", "index", f"kubehunt-{src.dataset}.json").read_text())
        assert src.index_pattern in body["index_patterns"]


def test_cli_setup_validation_and_exporters_read_the_registry():
    from pipeline import rules, validate
    from pipeline.cli import _parser
    from transforms import sigma_pipeline

    args = _parser().parse_args(["run", "--audit", "a.log", "--falco", "f.log"])
    assert {s.name: getattr(args, f"{s.name}_index") for s in sources.ALL} == {
        "audit": "logs-kubernetes.audit_logs-default", "falco": "logs-falco.alerts-default"}
    assert {s.name: getattr(args, s.name) for s in sources.ALL} == {"audit": ["a.log"], "falco": ["f.log"]}
    assert validate.OPTION_OF["audit"] == "--audit-index" and validate.OPTION_OF["falco"] == "--falco-index"
    for src in sources.ALL:
        assert mappings.path("templates", "index", f"{validate._TEMPLATE_OF[src.name]}.json").is_file()
    assert rules.INDEX == {"kubernetes.audit_logs": ["logs-kubernetes.audit_logs-*"],
                           "falco.alerts": ["logs-falco.alerts-*"]}
    assert sigma_pipeline.INDEX == "logs-kubernetes.audit_logs-*"


def test_run_config_inputs_name_every_source_in_registry_order():
    from pipeline.options import RunConfig

    assert RunConfig(audit=("a",), falco=("f1", "f2")).inputs() == (("audit", ("a",)), ("falco", ("f1", "f2")))
