"""The registry of sources: one record per kind of input, the one place its identity is stated.

A source is what `--audit` / `--falco` read: its short name (used in counters, dead letters and
options), its ECS dataset, the mapping file that normalises it, what people and Sigma call it, and
where its documents go in Elasticsearch (the data stream `logs-<dataset>-<namespace>`, its index
template, the index pattern and Kibana data view that cover every namespace). The CLI's options and
help texts, setup, validation, report, the rule exporters and the Kibana objects read it here. To add
a source: add one `Source` here and its mapping file in `mappings/ecs/` (docs/architecture.md lists
the code a source needs: its parser, its computed fields and a `RunConfig` field).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    name: str               # short name: counters, dead letters, `--<name>` options
    dataset: str            # ECS event.dataset and the data stream's dataset part
    mapping_file: str       # in mappings/ecs/
    title: str              # for people: Kibana data view title
    what: str               # for people: what its documents are, in help texts ("audit events")
    input_help: str         # the help text of the `--<name> PATH...` input option
    sigma_logsource: tuple[tuple[str, str], ...]   # Sigma's `logsource` of its rules
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
    def index_template(self) -> str:
        """The index template (mappings/templates/index/<name>.json) meant for its data streams."""
        return f"kubehunt-{self.dataset}"

    @property
    def index_option(self) -> str:
        """The option that names its destination."""
        return f"--{self.name}-index"

    @property
    def data_view_id(self) -> str:
        return f"kubehunt-data-view-{self.name}"


AUDIT_SOURCE = Source(
    "audit", "kubernetes.audit_logs", "kubernetes.audit_logs.yaml", "kubehunt: Kubernetes audit events",
    what="audit events",
    input_help="Kubernetes audit logs: files, globs, directories; .gz/.bz2/.zst read transparently",
    sigma_logsource=(("product", "kubernetes"), ("service", "audit")))
FALCO_SOURCE = Source(
    "falco", "falco.alerts", "falco.alerts.yaml", "kubehunt: Falco alerts",
    what="Falco alerts",
    input_help="Falco JSON alerts (json_output or syslog lines carrying JSON), same forms as --audit",
    sigma_logsource=(("product", "falco"), ("service", "alerts")))

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
