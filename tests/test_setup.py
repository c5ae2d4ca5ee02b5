"""`kubehunt setup` / ensure_destinations against the real node: what it installs, idempotence, checks."""
from __future__ import annotations

import json

import pytest

import mappings
import pipeline.setup as setup_mod
from pipeline.setup import ILM_POLICY, SetupError, ensure_destinations, install_templates
from tests.es_helpers import _delete_test_indices, settings_for
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.elasticsearch


def _file_properties(stem: str) -> dict:
    return json.loads(mappings.path("indices", f"{stem}.json").read_text())["mappings"]["properties"]


def test_setup_creates_the_incidents_and_dead_letter_indices_with_their_mappings(es_url, es, unique_name):
    settings = settings_for(es_url, unique_name)
    first = ensure_destinations(settings)
    assert first["version"].startswith("8.")
    assert f"index:{settings.index_for('incidents')}" in first["changed"]
    assert f"index:{settings.index_for('dead_letters')}" in first["changed"]
    for kind, stem in (("incidents", "kubehunt-incidents"), ("dead_letters", "kubehunt-dead-letters")):
        name = settings.index_for(kind)
        installed = es.indices.get_mapping(index=name)[name]["mappings"]
        assert installed["properties"] == _file_properties(stem)
    assert es.indices.get_mapping(index=settings.index_for("dead_letters"))[
        settings.index_for("dead_letters")]["mappings"]["dynamic"] == "false"


def test_a_second_setup_changes_nothing(es_url, unique_name):
    settings = settings_for(es_url, unique_name)
    ensure_destinations(settings)
    assert ensure_destinations(settings)["changed"] == []


def test_event_destinations_become_data_streams_when_a_template_says_so(es_url, es, unique_name):
    # logs-*-* names match Elasticsearch's built-in `logs` data-stream template; h6-... names match none.
    stream = f"logs-h6{unique_name}.audit-test"
    settings = settings_for(es_url, unique_name)
    settings = settings.__class__(**{**settings.__dict__, "indices": (("audit", stream),) + settings.indices[1:]})
    try:
        changed = ensure_destinations(settings)["changed"]
        assert f"data_stream:{stream}" in changed
        assert es.indices.get_data_stream(name=stream)["data_streams"][0]["name"] == stream
        assert not es.indices.exists(index=settings.index_for("falco"))   # created as an index on first write
        assert ensure_destinations(settings)["changed"] == []
    finally:
        es.indices.delete_data_stream(name=stream)


def test_the_ilm_policy_is_installed_and_attached_once(es_url, es, unique_name):
    stream = f"logs-h6{unique_name}.audit-ilm"
    settings = settings_for(es_url, unique_name)
    settings = settings.__class__(**{**settings.__dict__, "indices": (("audit", stream),) + settings.indices[1:]})
    try:
        changed = ensure_destinations(settings, ilm_policy=True)["changed"]
        assert f"ilm-attached:{stream}" in changed
        policy = es.ilm.get_lifecycle(name=ILM_POLICY)[ILM_POLICY]["policy"]
        assert policy["phases"]["delete"]["min_age"] == "30d"
        backing = es.indices.get_settings(index=stream, name="index.lifecycle.name")
        assert {v["settings"]["index"]["lifecycle"]["name"] for v in backing.values()} == {ILM_POLICY}
        assert ensure_destinations(settings, ilm_policy=True)["changed"] == []
    finally:
        es.indices.delete_data_stream(name=stream)


def test_templates_are_written_when_new_or_changed_and_skipped_otherwise(es, tmp_path, monkeypatch, unique_name):
    component = tmp_path / "component" / f"h6-{unique_name}-settings.json"
    index = tmp_path / "index" / f"h6-{unique_name}-template.json"
    component.parent.mkdir()
    index.parent.mkdir()
    component.write_text(json.dumps({"template": {"settings": {"index": {"number_of_shards": 1}}}}))
    index.write_text(json.dumps({"index_patterns": [f"h6-{unique_name}-tpl-*"], "priority": 500,
                                 "composed_of": [component.stem],
                                 "template": {"mappings": {"properties": {"n": {"type": "long"}}}}}))
    monkeypatch.setattr(setup_mod, "_template_files", lambda kind: [component] if kind == "component" else [index])
    try:
        assert install_templates(es, only_changed=True) == [f"component:{component.stem}", f"index:{index.stem}"]
        assert install_templates(es, only_changed=True) == []
        index.write_text(index.read_text().replace('"long"', '"keyword"'))
        assert install_templates(es, only_changed=True) == [f"index:{index.stem}"]
        es.indices.create(index=f"h6-{unique_name}-tpl-1")
        got = es.indices.get_mapping(index=f"h6-{unique_name}-tpl-1")[f"h6-{unique_name}-tpl-1"]
        assert got["mappings"]["properties"]["n"]["type"] == "keyword"
        # Without only_changed (the seam others call) everything is written again.
        assert install_templates(es) == [f"component:{component.stem}", f"index:{index.stem}"]
    finally:
        es.indices.delete(index=f"h6-{unique_name}-tpl-*")
        es.indices.delete_index_template(name=index.stem)
        es.cluster.delete_component_template(name=component.stem)


def test_every_shipped_template_is_installed(es_url, es, unique_name):
    ensure_destinations(settings_for(es_url, unique_name))
    for file in mappings.path("templates", "component").glob("*.json"):
        assert es.cluster.get_component_template(name=file.stem)["component_templates"]
    for file in mappings.path("templates", "index").glob("*.json"):
        assert es.indices.get_index_template(name=file.stem)["index_templates"]


def test_an_existing_index_with_a_conflicting_mapping_is_reported(es_url, es, unique_name):
    settings = settings_for(es_url, unique_name)
    es.indices.create(index=settings.index_for("dead_letters"),
                      mappings={"properties": {"kubehunt": {"properties": {"dead_letter": {"properties": {
                          "line": {"type": "keyword"}}}}}}})
    with pytest.raises(SetupError, match=f"index {settings.index_for('dead_letters')} exists with a mapping that conflicts"):
        ensure_destinations(settings)


def test_an_unsupported_server_version_is_refused_clearly(es_url, unique_name):
    """Proxy fault: the real node's `GET /` answer with its version number rewritten to 7.17.9
    (no 7.x node can be installed here)."""
    with FaultProxy(es_url) as proxy:
        proxy.fake_version = "7.17.9"
        with pytest.raises(SetupError, match=r"Elasticsearch 7\.17\.9 .* is not supported: kubehunt needs 8\.x"):
            ensure_destinations(settings_for(proxy.url, unique_name))


def test_kubehunt_setup_command(es_url, unique_name, capsys):
    from pipeline.cli import main

    args = ["setup", "--es-url", es_url, "--incidents-index", f"h6-{unique_name}-inc",
            "--dead-letter-index", f"h6-{unique_name}-dl"]
    assert main(args) == 0
    assert f"index:h6-{unique_name}-inc" in capsys.readouterr().out
    assert main(args) == 0
    assert "nothing to change" in capsys.readouterr().out


def test_an_unreachable_server_says_how_to_fix_it(unique_name):
    with pytest.raises(SetupError, match="unreachable .*scripts/elasticsearch.sh start"):
        ensure_destinations(settings_for("http://127.0.0.1:1", unique_name))
