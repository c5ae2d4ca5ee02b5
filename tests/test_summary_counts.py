"""The run summary's arithmetic, from hand-made counters (no pipeline): every figure below is counted by
hand, so a dropped term, a wrong counter name or a flipped sign in the books shows. Also the exit
status the summary decides (0 balanced, 1 not balanced, 3 dead letters above the ratio)."""
from __future__ import annotations

import json

import pytest

from pipeline.backfill import exit_status
from pipeline.summary import Summary

# 10 audit lines read: 7 events, 2 that did not parse, 1 that did not normalise; 5 falco lines: 4
# events, 1 oversized (dead at read). Written: audit 5 indexed + 1 already present + 1 dead at index;
# falco 4 indexed. So read = 11 events + 4 dead input = 15, accounted = 10 + 1 + 1 + 4 = 15.
COUNTERS = {
    "files_read.audit": 2, "files_read.falco": 1, "lines_read.audit": 10, "lines_read.falco": 5,
    "blank_lines.audit": 3, "events.audit": 7, "events.falco": 4,
    "dead.read": 1, "dead.parse": 2, "dead.normalise": 1,
    "written.audit": 5, "present.audit": 1, "dead.index.audit": 1, "written.falco": 4,
    "hunt.pod-exec": 2, "hunt.rbac-modification": 2, "hunt.anonymous-request-allowed": 5,
    "written.incidents": 1, "present.incidents": 1, "incidents.confirmed": 1, "incidents.total": 3,
    "alerts.unresolved": 2, "incidents.sa_source.pod_create": 2, "written.dead_letters": 5,
    "es.received.audit": 7, "es.received.falco": 4, "es.retries": 6,
}


def summary(counters=COUNTERS, elapsed=2.0) -> Summary:
    return Summary(dict(counters), elapsed, "Elasticsearch https://user:pw@es:9200/?x=1")


def test_every_figure_is_counted_from_its_own_counters():
    d = summary().as_dict()
    assert d["files_read"] == {"audit": 2, "falco": 1}
    assert d["lines_read"] == {"audit": 10, "falco": 5}
    assert d["blank_lines_skipped"] == {"audit": 3, "falco": 0}
    assert d["events"] == {"audit": 7, "falco": 4}
    assert d["hunts"] == {"anonymous-request-allowed": 5, "pod-exec": 2, "rbac-modification": 2}
    assert d["incidents"] == {"written": 2, "confirmed": 1, "candidates": 3, "unresolved_alerts": 2,
                              "sa_sources": {"pod_create": 2}}
    assert d["dead_letters"] == {"read": 1, "parse": 2, "normalise": 1, "serialise": 0, "index": 1, "written": 5}
    assert d["written"] == {"indexed": {"audit": 5, "falco": 4}, "already_present": {"audit": 1, "falco": 0}}
    assert (d["records_read"], d["records_accounted"], d["balanced"]) == (15, 15, True)
    assert d["destinations"] == {
        "audit": {"received": 7, "indexed": 5, "already_present": 1, "dead_lettered": 1, "balanced": True},
        "falco": {"received": 4, "indexed": 4, "already_present": 0, "dead_lettered": 0, "balanced": True}}
    assert d["retries"] == 6 and d["elapsed_s"] == 2.0 and d["events_per_s"] == 5.5
    assert d["sink"] == "Elasticsearch https://***@es:9200/?***"


def test_dead_letters_at_input_count_on_both_sides_of_the_books():
    # One more line that did not parse: read and accounted both grow by one.
    d = summary({**COUNTERS, "dead.parse": 3}).as_dict()
    assert (d["records_read"], d["records_accounted"], d["balanced"]) == (16, 16, True)


@pytest.mark.parametrize(("change", "read", "accounted"), [
    ({"events.audit": 8}, 16, 15),           # an event that was never written
    ({"written.falco": 5}, 15, 16),          # a document written twice
    ({"dead.index.audit": 0}, 15, 14),       # a dead letter at the index lost
])
def test_books_that_do_not_balance_say_so_and_exit_1(change, read, accounted):
    d = summary({**COUNTERS, **change}).as_dict()
    assert (d["records_read"], d["records_accounted"], d["balanced"]) == (read, accounted, False)
    assert exit_status(d, None) == 1
    assert "NOT BALANCED" in summary({**COUNTERS, **change}).render().splitlines()[-2]


def test_a_destination_that_lost_a_document_is_not_balanced_even_when_the_books_are():
    # Elasticsearch received 8 audit documents but accounts for 7: the run is not balanced.
    s = summary({**COUNTERS, "es.received.audit": 8})
    d = s.as_dict()
    assert d["records_read"] == d["records_accounted"] and d["balanced"] is False
    assert d["destinations"]["audit"]["balanced"] is False and d["destinations"]["falco"]["balanced"] is True
    lines = s.render().splitlines()
    assert "  -> audit           received 8 = indexed 5 + already present 1 + dead-lettered 1  NOT BALANCED" in lines
    assert "  -> falco           received 4 = indexed 4 + already present 0 + dead-lettered 0" in lines


def test_the_rendered_summary_lists_hunts_by_count_then_name():
    text = summary().render()
    lines = text.splitlines()
    assert lines[0] == "kubehunt run summary"
    assert "  sink              Elasticsearch https://***@es:9200/?***" in lines
    assert "  files read        audit 2  falco 1" in lines
    assert "  lines read        audit 10  falco 5   (blank lines skipped: 3)" in lines
    assert "  events            audit 7  falco 4" in lines
    start = lines.index("  hunts             9 matches")
    assert [line.split() for line in lines[start + 1:start + 4]] == [
        ["5", "anonymous-request-allowed"], ["2", "pod-exec"], ["2", "rbac-modification"]]
    assert "  incidents         2 written (1 confirmed); unresolved alerts 2" in lines
    assert "  dead letters      read 1  parse 2  normalise 1  serialise 0  index 1" in lines
    assert "  written           indexed: audit 5  falco 4; already present: audit 1  falco 0" in lines
    assert "  retries           6 documents re-sent after 429/5xx/connection errors" in lines
    assert "  books             read 15 = written + dead 15: balanced" in lines
    assert lines[-1] == "  elapsed           2.0 s, 6 events/s"


def test_no_retries_no_retry_line_and_no_time_no_rate():
    counters = {k: v for k, v in COUNTERS.items() if k != "es.retries"}
    s = summary(counters, elapsed=0.0)
    assert s.as_dict()["retries"] == 0 and s.as_dict()["events_per_s"] is None
    assert not any(line.startswith("  retries") for line in s.render().splitlines())
    assert s.render().splitlines()[-1] == "  elapsed           0.0 s, 0 events/s"


def test_an_empty_run_counts_zero_everywhere_and_balances():
    d = Summary({}, 1.0, "files in out").as_dict()
    assert d["records_read"] == d["records_accounted"] == 0 and d["balanced"] is True
    assert d["destinations"] == {} and d["hunts"] == {} and d["events_per_s"] == 0.0


@pytest.mark.parametrize(("ratio", "code"), [(None, 0), (0.3, 0), (4 / 15, 0), (0.26, 3), (0.0, 3)])
def test_dead_letters_above_the_ratio_exit_3(ratio, code):
    # No dead letter at the index here: 4 dead at input of 15 records read, a ratio of 4/15 = 0.267
    # (the dead-letter documents written, 5, are where they went, not more dead letters).
    d = summary({**COUNTERS, "dead.index.audit": 0, "written.audit": 6}).as_dict()
    assert d["balanced"] is True and d["records_read"] == 15
    assert exit_status(d, ratio) == code


def test_the_json_summary_is_the_same_dictionary(tmp_path):
    s = summary()
    s.write_json(str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text()) == s.as_dict()
