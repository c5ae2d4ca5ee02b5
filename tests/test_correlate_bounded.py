"""The join's state for a hot service account depends on the window, not on how many events the run has:
the benchmark's harness (tests/builders/join_harness.py) drives the production DoFns like a streaming runner."""
from __future__ import annotations

from tests.builders.join_harness import drive_join


def test_join_state_for_a_hot_account_does_not_grow_with_the_number_of_events():
    window_ms, lateness_ms = 30 * 60_000, 10 * 60_000
    short = drive_join(20_000, 10_000, window_ms, lateness_ms, bundle=500, trace=False)
    long = drive_join(80_000, 10_000, window_ms, lateness_ms, bundle=500, trace=False)
    per_window = short["events_per_window"]
    # Each hourly alert joins exactly the window's events (+1: both edges are inclusive).
    assert short["largest_incident_actions"] == long["largest_incident_actions"] == per_window + 1
    assert long["final_incidents"] == 4 * short["final_incidents"]
    # What the join holds at once is the same for 4x the events: (bucket + window + 2 x lateness) of events.
    assert long["max_events_in_join_state"] == short["max_events_in_join_state"]
    assert short["max_events_in_join_state"] <= per_window * (30 + 30 + 2 * 10) / 30 + 1000
