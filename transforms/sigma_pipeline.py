"""A pySigma processing pipeline for kubehunt's Kubernetes audit documents, and `convert()` for the CLI.

SigmaHQ's Kubernetes audit rules (`logsource: product: kubernetes, service: audit`) name the raw
audit Event fields (`verb`, `objectRef.resource`, `responseStatus.code`, `requestURI`,
`userAgent`), and some older ones bare names (`apiGroup`, `hostPath`, `capabilities`). kubehunt
keeps the Event under `kubernetes.audit.*`, typed as Elastic's integration types it, so every raw
name maps to `kubernetes.audit.<name>`; the bare names map to where the API puts them.

Use it with pySigma yourself::

    from sigma.backends.elasticsearch import LuceneBackend
    from transforms.sigma_pipeline import kubehunt_pipeline
    LuceneBackend(kubehunt_pipeline()).convert(SigmaCollection.from_yaml(text))

pySigma's own `ecs_kubernetes` pipeline maps only the bare names (and requires
`kubernetes.audit.kind: Event`, which GKE records do not carry), so rules written against
`objectRef.*` find nothing with it.
"""
from __future__ import annotations

import re

from sigma.processing.conditions import IncludeFieldCondition, LogsourceCondition, MatchStringCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    CaseTransformation,
    DropDetectionItemTransformation,
    FieldMappingTransformation,
    FieldPrefixMappingTransformation,
)

from transforms.sources import AUDIT_SOURCE

AUDIT = "kubernetes.audit."
DATASET = AUDIT_SOURCE.dataset
INDEX = AUDIT_SOURCE.index_pattern
TARGETS = ("lucene", "eql", "esql")

# Bare names of older rules -> where the audit Event has them.
BARE = {
    "verb": AUDIT + "verb",
    "apiGroup": AUDIT + "objectRef.apiGroup",
    "apiVersion": AUDIT + "objectRef.apiVersion",
    "resource": AUDIT + "objectRef.resource",
    "subresource": AUDIT + "objectRef.subresource",
    "namespace": AUDIT + "objectRef.namespace",
    "name": AUDIT + "objectRef.name",
    "username": AUDIT + "user.username",
    "groups": AUDIT + "user.groups",
    # Exists-style selections (`hostPath: '*'`): the object itself; the index maps its keys
    # (mappings/elastic.py), so an exists query on it matches a pod that has one.
    "hostPath": AUDIT + "requestObject.spec.volumes.hostPath",
    "capabilities": AUDIT + "requestObject.spec.containers.securityContext.capabilities",
    "privileged": AUDIT + "requestObject.spec.containers.securityContext.privileged",
}
# Raw Event fields, top level and nested: kept as sent under kubernetes.audit.
RAW_PREFIXES = ("objectRef.", "responseStatus.", "user.", "impersonatedUser.", "requestObject.", "responseObject.",
                "annotations.")
RAW_TOP = ("requestURI", "userAgent", "sourceIPs", "stage", "level", "auditID", "kind", "apiVersion",
           "requestReceivedTimestamp", "stageTimestamp")
# Elastic's name for the decision annotation (a runtime field of our template over the stored key):
# unlike the flattened key, ES|QL and EQL can read it.
DECISION = AUDIT + "annotations.authorization_k8s_io/decision"

# ES|QL and EQL read columns (leaf fields), not objects: there an exists-style selection on an
# object is asked of one key every such object has.
LEAF_OF = {BARE["hostPath"]: BARE["hostPath"] + ".path",
           BARE["capabilities"]: BARE["capabilities"] + ".add"}


def kubehunt_pipeline(target: str = "lucene") -> ProcessingPipeline:
    """The processing pipeline for `target` (lucene, eql or esql)."""
    def audit():      # a condition object belongs to one processing item
        return [LogsourceCondition(**dict(AUDIT_SOURCE.sigma_logsource))]
    bare = dict(BARE)
    if target in ("eql", "esql"):
        bare = {k: LEAF_OF.get(v, v) for k, v in bare.items()}
    items = [
        ProcessingItem(identifier="kubehunt_dataset", rule_conditions=audit(),
                       transformation=AddConditionTransformation({"data_stream.dataset": DATASET}, template=False)),
        # `responseStatus.code: 'ALLOW'` (potential enumeration rule): no HTTP code is a word; the
        # value is the authorizer's decision, which the audit Event records as an annotation.
        ProcessingItem(identifier="kubehunt_decision_word", rule_conditions=audit(),
                       field_name_conditions=[IncludeFieldCondition(fields=["responseStatus.code"])],
                       detection_item_conditions=[MatchStringCondition(cond="any", pattern="^[A-Za-z]+$")],
                       transformation=FieldMappingTransformation({"responseStatus.code": DECISION})),
        ProcessingItem(identifier="kubehunt_decision_case", rule_conditions=audit(),
                       field_name_conditions=[IncludeFieldCondition(fields=[DECISION])],
                       transformation=CaseTransformation("lower")),
        ProcessingItem(identifier="kubehunt_bare_names", rule_conditions=audit(),
                       transformation=FieldMappingTransformation(bare)),
        ProcessingItem(identifier="kubehunt_raw_fields", rule_conditions=audit(),
                       transformation=FieldPrefixMappingTransformation(
                           {p: AUDIT + p for p in RAW_PREFIXES} | {t: AUDIT + t for t in RAW_TOP})),
        # As pySigma's ecs_kubernetes: an empty apiGroup (the core group) is not stored as a value.
        ProcessingItem(identifier="kubehunt_drop_core_group", rule_conditions=audit(),
                       field_name_conditions=[IncludeFieldCondition(fields=[AUDIT + "objectRef.apiGroup"])],
                       detection_item_conditions=[MatchStringCondition(cond="any", pattern="^$")],
                       transformation=DropDetectionItemTransformation()),
    ]
    return ProcessingPipeline(name="kubehunt Kubernetes audit (kubernetes.audit.*, Elastic data streams)",
                              priority=20, items=items, allowed_backends=frozenset())


def _finish(query: str, target: str) -> str:
    """Repairs to the backend's text (pySigma-backend-elasticsearch 2.1)."""
    if target == "lucene":
        # A `/` in a field name starts a regular expression in query_string syntax: escape it.
        query = query.replace(DECISION + ":", DECISION.replace("/", "\\/") + ":")
    elif target == "eql":
        # A list of numbers comes out as `like~ (401, 403)`, which EQL refuses on a numeric field.
        query = re.sub(r"(\S+) like~ \(([\d, ]+)\)", r"\1 in (\2)", query)
        # A field name with `/` must be quoted in EQL.
        query = re.sub(rf"(?<!`){re.escape(DECISION)}(?!`)", f"`{DECISION}`", query)
    elif query.startswith("from * "):
        query = query.replace("from * ", f"from {INDEX} ", 1)
    return query


class SigmaError(ValueError):
    """The rule cannot be read or converted; the message says why."""


def convert(rule_text: str, target: str = "lucene") -> list[str]:
    """Sigma rule YAML -> queries for `target` with kubehunt's pipeline."""
    from sigma.backends.elasticsearch import EqlBackend, ESQLBackend, LuceneBackend
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError as PySigmaError

    backends = {"lucene": LuceneBackend, "eql": EqlBackend, "esql": ESQLBackend}
    if target not in backends:
        raise SigmaError(f"unknown target {target!r} (choose {', '.join(TARGETS)})")
    try:
        rules = SigmaCollection.from_yaml(rule_text)
        backend = backends[target](kubehunt_pipeline(target))
        return [_finish(q, target) for q in backend.convert(rules)]
    except PySigmaError as err:
        raise SigmaError(str(err)) from None
