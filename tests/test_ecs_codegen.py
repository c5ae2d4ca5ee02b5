"""`transforms.ecs.codegen`, the one mapping compiler: the code it generates is pinned (golden file), and
what that code does on each construct of the mapping language is checked on records."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from transforms.ecs import EcsMapping, compile_mapping, load_mapping

GOLDEN = Path(__file__).resolve().parent / "golden" / "ecs_codegen_apply.py.txt"

# One line of every construct: filter, `??`, constant, typed filter, deep path, of:key, =function, table,
# and a line repeating another's source and filters (computed once).
MAPPING = """dataset: d
original: o
fields:
  "@timestamp": t | date
  a.first: missing ?? b.c
  a.const: "'k'"
  a.num: n | long
  a.deep: x.y.z
  a.of: of:k.name
  a.fn: =audit_outcome
  a.lookup: level | table:levels
  a.pick: p ?? q | table:levels
  b.num: n | long
tables:
  levels: {"*": none, high: [critical, error]}
"""


def compiled(tmp_path: Path, text: str = MAPPING):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return compile_mapping(EcsMapping.load(path))


def test_generated_code_is_the_golden_one(tmp_path):
    assert compiled(tmp_path).source == GOLDEN.read_text(), \
        "the compiler's output changed: review it, then run python tests/test_ecs_codegen.py to update the golden file"


def test_generated_code_builds_nested_objects_only_when_they_get_a_field(tmp_path):
    m = compiled(tmp_path)
    # A source with no value skips its filters (a table default needs a constant alternative).
    assert m.apply({}) == {"a": {"const": "k"}}
    doc = m.apply({"t": "2024-01-02T03:04:05Z", "b": {"c": "x"}, "n": "7", "x": {"y": {"z": 1}},
                   "output_fields": {"k.name": "kn"}, "responseStatus": {"code": 500}, "level": "ERROR"})
    assert doc == {"@timestamp": "2024-01-02T03:04:05Z",
                   "a": {"first": "x", "const": "k", "num": 7, "deep": 1, "of": "kn", "fn": "failure",
                         "lookup": "high"}, "b": {"num": 7}}


@pytest.mark.parametrize("empty", [None, "", [], {}])
def test_alternative_is_taken_when_the_first_source_has_no_value(tmp_path, empty):
    # docs/ecs.md: `a ?? b` takes the first source that has a value; None, "", [] and {} have none.
    m = compiled(tmp_path)
    assert m.apply({"missing": empty, "b": {"c": "x"}})["a"]["first"] == "x"
    assert m.apply({"p": empty, "q": "critical"})["a"]["pick"] == "high"


def test_empty_object_with_no_alternative_value_leaves_the_field_out_unnamed(tmp_path):
    doc = compiled(tmp_path).apply({"missing": {}})
    assert "first" not in doc["a"] and "kubehunt" not in doc


def test_object_that_has_a_value_is_taken_and_dropped_by_the_guard(tmp_path):
    # A non-empty object is a value: `??` stops there, and the keyword guard refuses it (named).
    doc = compiled(tmp_path).apply({"missing": {"k": 1}, "b": {"c": "x"}})
    assert "first" not in doc["a"]
    assert doc["kubehunt"]["normalise"]["dropped"] == ["a.first"]


def test_dropped_fields_are_named_in_mapping_order(tmp_path):
    doc = compiled(tmp_path).apply({"t": "never", "n": "x", "x": {"y": {"z": {"o": 1}}}})
    assert doc["kubehunt"]["normalise"]["dropped"] == ["@timestamp", "a.num", "a.deep", "b.num"]


def test_a_repeated_line_is_computed_once_and_each_field_owns_its_list(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("dataset: d\noriginal: o\nfields:\n  a.ip: ips | ip\n  b.ip: ips | ip\n")
    m = compile_mapping(EcsMapping.load(path))
    assert m.source.count("(v)") == 1  # one call of the ip filter
    doc = m.apply({"ips": ["10.0.0.1", "x"]})
    assert doc == {"a": {"ip": ["10.0.0.1"]}, "b": {"ip": ["10.0.0.1"]}}
    assert doc["a"]["ip"] is not doc["b"]["ip"]


@pytest.mark.parametrize("source", ["audit", "falco"])
def test_production_mappings_compile_to_one_function(source):
    m = load_mapping(source)
    assert m.source.startswith("def apply(r):\n") and m.source.count("\ndef ") == 0
    assert len(m.rules) == len({target for target, _ in m.rules})


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(compiled(Path(tmp)).source)
    print(f"wrote {GOLDEN}", file=sys.stderr)
