"""Escalation chains: join Falco alerts to their pod's service-account activity within a window.

An incident is a Falco alert at time t in pod (ns, pod), resolved to the pod's service account SA,
plus every audit event by SA (``user.name``, or the impersonated ``user.effective.name``) with
t <= time <= t + window (inclusive, millisecond precision). docs/correlation.md has the design, its
guarantees and the measurements. The modules, in data-flow order:

- ``messages``  the typed records that travel (``AlertSeen``, ``Action``, ``PodFact`` from documents;
                ``Actions``, ``AlertCopy``, ``Resolution``, ``Pair`` between the stages);
- ``extract``   ECS document -> join inputs (hot loop), ``JoinScope`` (batch: what can join at all),
                ``ExtractJoinInputs`` (documents -> join inputs, as a transform);
- ``resolve``   stage 1, keyed by pod: which SA the alert's pod runs as (facts, ``--pods`` inventory);
- ``join``      stage 2, keyed by (SA, time bucket): the symmetric interval join; ``STAGES``, the one
                definition of the wiring, and ``CorrelateByServiceAccount``;
- ``incident``  stage 3, keyed by alert: the incident documents and their versions;
- ``batch``     the same three steps on GroupByKeys, for bounded inputs (``join.BATCH_STAGES``).
"""
from transforms.correlate.extract import (POD_CLAIM, ExtractJoinInputs, JoinScope, confirming_hunts, confirms,
                                          epoch_ms, extract, pod_service_account, service_account)
from transforms.correlate.incident import (INCIDENT_DATASET, SEVERITY_CANDIDATE, SEVERITY_CONFIRMED,
                                           AssembleIncidentFn, CountIncidentsFn, CountUnresolvedFn,
                                           base_version, build_incident, iso_ms)
from transforms.correlate.join import (BATCH_STAGES, STAGES, CorrelateByServiceAccount, JoinSettings, JoinStage, JoinWindowFn,
                                       RouteCorrelationElementsFn, duration_ms, wire)
from transforms.correlate.messages import (SA_PREFIX, SA_SOURCES, TIMELESS, Action, Actions, AlertCopy, AlertSeen,
                                           Pair, PodFact, Resolution)
from transforms.correlate.resolve import (UNRESOLVED, InventoryError, ReadPodInventoryFn, ResolvePodFn, buckets,
                                          decide, inventory_service_accounts)

__all__ = [
    "POD_CLAIM", "confirming_hunts", "ExtractJoinInputs", "JoinScope", "confirms", "epoch_ms", "extract",
    "pod_service_account", "service_account", "INCIDENT_DATASET", "SEVERITY_CANDIDATE", "SEVERITY_CONFIRMED",
    "AssembleIncidentFn", "CountIncidentsFn", "CountUnresolvedFn", "base_version", "build_incident", "iso_ms",
    "BATCH_STAGES", "STAGES", "CorrelateByServiceAccount", "JoinSettings", "JoinStage", "JoinWindowFn",
    "RouteCorrelationElementsFn", "duration_ms", "wire", "SA_PREFIX", "SA_SOURCES", "TIMELESS", "Action",
    "Actions", "AlertCopy", "AlertSeen", "Pair", "PodFact", "Resolution", "UNRESOLVED", "InventoryError",
    "ReadPodInventoryFn", "ResolvePodFn", "buckets", "decide", "inventory_service_accounts",
]
