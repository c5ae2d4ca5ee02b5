"""Escalation chains: join Falco alerts to their pod's service-account activity within a window.

(Foundation seam: `extract` picks the per-event elements the join needs; the join itself is built
by the correlation work.)
"""
from __future__ import annotations


def extract(doc: dict) -> list:
    return []


import apache_beam as beam  # noqa: E402


class CorrelateByServiceAccount(beam.PTransform):
    """Correlation elements (from `extract`) -> incident documents (dicts). Seam, filled in later."""

    def __init__(self, window, allowed_lateness=None, assume_default_sa: bool = False, pods_file: str | None = None):
        super().__init__()
        self.window = window

    def expand(self, elements):
        return elements | "NoIncidentsYet" >> beam.FlatMap(lambda _: [])
