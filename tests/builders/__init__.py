"""Builders of seeded test data and harnesses, imported by the tests and by the scripts in scripts/.

- ``corpus``: realistic audit events and Falco alerts with labelled hunt edge cases, and the
  benchmark's corpus (``scripts/gen_corpus.py`` writes them to files);
- ``scenario``: escalation chains with their ground truth, and ``Builder`` for a test's own events
  (``scripts/gen_scenario.py`` writes a scenario to files);
- ``join_harness``: drives the join's stages (``transforms.correlate.STAGES``) like a streaming
  runner, for the join's memory test and ``scripts/bench_correlate.py``.
"""
