"""The registry of sources: one record per kind of input, the one place its identity is stated.

A source is what `--audit` / `--falco` read: its short name (used in counters, dead letters and
options), its ECS dataset, the mapping file that normalises it, and where its documents go in
Elasticsearch (the data stream `logs-<dataset>-<namespace>`, the index pattern and Kibana data view
that cover every namespace). To add a source: add one `Source` here and its mapping file in
`mappings/ecs/`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    name: str               # short name: counters, dead letters, `--<name>` options
    dataset: str            # ECS event.dataset and the data stream's dataset part
    mapping_file: str       # in mappings/ecs/
    title: str              # for people: Kibana data view title
    namespace: str = "default"

    @property
    def default_index(self) -> str:
        """The data stream events go to unless `--<name>-index` says otherwise."""
        return f"logs-{self.dataset}-{self.namespace}"

    @property
    def index_pattern(self) -> str:
        """Every namespace of this source's data streams (templates, searches, the data view)."""
        return f"logs-{self.dataset}-*"

    @property
    def data_view_id(self) -> str:
        return f"kubehunt-data-view-{self.name}"


AUDIT_SOURCE = Source("audit", "kubernetes.audit_logs", "kubernetes.audit_logs.yaml", "kubehunt: Kubernetes audit events")
FALCO_SOURCE = Source("falco", "falco.alerts", "falco.alerts.yaml", "kubehunt: Falco alerts")

ALL: tuple[Source, ...] = (AUDIT_SOURCE, FALCO_SOURCE)
NAMES: tuple[str, ...] = tuple(s.name for s in ALL)

_BY_NAME = {s.name: s for s in ALL}
_BY_DATASET = {s.dataset: s for s in ALL}


def source(name: str) -> Source:
    """The source called `name` (`audit`, `falco`); KeyError naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r} (known: {', '.join(NAMES)})") from None


def by_dataset(dataset: str) -> Source:
    """The source whose ECS dataset is `dataset` (`kubernetes.audit_logs`, `falco.alerts`)."""
    try:
        return _BY_DATASET[dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r} (known: {', '.join(_BY_DATASET)})") from None
