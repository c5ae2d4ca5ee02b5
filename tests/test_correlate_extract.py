"""`transforms.correlate.extract` and the pod -> service account rule, one behaviour per test."""
from __future__ import annotations

import pytest

from tests.builders.scenario import BASE_MS, Builder, iso_us
from transforms import correlate
from transforms.correlate import decide, epoch_ms, extract, service_account
from transforms.ecs import Normaliser, to_epoch_ms

NORMALISER = Normaliser()


def audit_doc(**kwargs) -> dict:
    b = Builder(1)
    b.audit(BASE_MS, **kwargs)
    return NORMALISER.to_ecs("audit", b.scenario.audit[0])


def kinds(elements) -> list[str]:
    return [type(e).__name__ for e in elements]


def test_a_human_reading_pods_is_irrelevant():
    assert extract(audit_doc(user="alice", verb="get", resource="pods", ns="shop", name="x")) == []


@pytest.mark.parametrize("user", ["system:serviceaccounts:shop:web", "system:serviceaccount:shop",
                                  "system:serviceaccount::web", "system:serviceaccount:shop:web:x"])
def test_look_alike_service_account_users_are_not_service_accounts(user):
    assert service_account(user) is None
    assert extract(audit_doc(user=user, verb="get", resource="secrets", ns="shop", name="db")) == []


def test_a_service_account_request_is_an_action_by_that_account():
    (element,) = extract(audit_doc(user="system:serviceaccount:shop:web", verb="get", resource="secrets",
                                   ns="shop", name="db"))
    assert isinstance(element, correlate.Action)
    assert (element.sa, element.t_ms) == ("system:serviceaccount:shop:web", BASE_MS)
    assert (element.verb, element.resource) == ("get", "secrets") and element.confirms is True


def test_impersonating_a_service_account_is_an_action_by_it():
    (element,) = extract(audit_doc(user="alice", verb="list", resource="pods", ns="shop",
                                   impersonate="system:serviceaccount:shop:web"))
    assert element.sa == "system:serviceaccount:shop:web" and element.confirms is False


def test_the_request_received_stage_is_not_a_second_action():
    assert extract(audit_doc(user="system:serviceaccount:shop:web", verb="get", resource="pods", ns="shop",
                             stage="RequestReceived")) == []


def test_a_denied_secret_read_is_an_action_but_does_not_confirm():
    (element,) = extract(audit_doc(user="system:serviceaccount:shop:web", verb="get", resource="secrets",
                                   ns="shop", name="db", code=403))
    assert element.confirms is False


def test_exec_subresource_is_shown_with_its_resource():
    (element,) = extract(audit_doc(user="system:serviceaccount:ci:runner", verb="create", resource="pods",
                                   ns="ci", name="web-1", subresource="exec"))
    assert element.resource == "pods/exec" and element.confirms is False


def test_a_pod_claim_is_a_fact_about_the_pod_in_the_accounts_namespace():
    elements = extract(audit_doc(user="system:serviceaccount:payments:api", verb="get", resource="configmaps",
                                 ns="payments", name="flags", pod_claim="api-0"))
    assert correlate.PodFact("payments", "api-0", "pod_claim", "system:serviceaccount:payments:api", BASE_MS) in elements
    assert kinds(elements) == ["PodFact", "Action"]


def test_generate_name_pod_create_takes_its_name_from_the_response_and_defaults_the_account():
    b = Builder(2)
    b.pod_create(BASE_MS, "batch", "worker-x8k2p", None, generate_name=True)
    doc = NORMALISER.to_ecs("audit", b.scenario.audit[0])
    facts = [e for e in extract(doc) if isinstance(e, correlate.PodFact)]
    assert facts == [correlate.PodFact("batch", "worker-x8k2p", "pod_create", "system:serviceaccount:batch:default",
                                       BASE_MS)]


def test_a_failed_pod_create_is_no_fact():
    b = Builder(2)
    b.pod_create(BASE_MS, "batch", "worker-1", "w")
    record = b.scenario.audit[0]
    record["responseStatus"]["code"] = 409
    assert [e for e in extract(NORMALISER.to_ecs("audit", record)) if isinstance(e, correlate.PodFact)] == []


def test_a_falco_alert_in_a_pod_is_an_alert_and_a_host_alert_is_ignored():
    b = Builder(3)
    alert_id = b.alert(BASE_MS + 1, "shop", "web-1", rule="Terminal shell in container")
    (element,) = extract(NORMALISER.to_ecs("falco", b.scenario.falco[0]))
    assert element == correlate.AlertSeen("shop", "web-1", BASE_MS + 1, alert_id, "Terminal shell in container")
    host = {"uuid": "h", "rule": "x", "priority": "Warning", "time": iso_us(BASE_MS), "output": "",
            "output_fields": {"proc.name": "sh"}}
    assert extract(NORMALISER.to_ecs("falco", host)) == []


@pytest.mark.parametrize("text", ["2024-05-01T10:00:00Z", "2024-05-01T10:00:59.999Z", "2024-05-01T10:00:01.5Z",
                                  "2024-05-01T10:00:00.123456789Z", "1970-01-01T00:00:00.001Z"])
def test_fast_timestamps_agree_with_the_normalisers_parser(text):
    assert epoch_ms(text) == to_epoch_ms(text)


SA_A, SA_B = "system:serviceaccount:ns:a", "system:serviceaccount:ns:b"


def test_a_pod_create_beats_a_claim_which_beats_the_inventory():
    facts = {("inventory", SA_A): correlate.TIMELESS, ("pod_claim", SA_B): 50, ("pod_create", SA_A): 10}
    assert decide(facts, "ns", 100, 30, False) == (SA_A, "pod_create", 3)
    del facts[("pod_create", SA_A)]
    assert decide(facts, "ns", 100, 30, False) == (SA_B, "pod_claim", 2)


def test_facts_after_the_window_are_not_used_and_unresolved_is_none_unless_assumed():
    facts = {("pod_claim", SA_A): 131}
    assert decide(facts, "ns", 100, 30, False) is None
    assert decide(facts, "ns", 100, 30, True) == ("system:serviceaccount:ns:default", "assumed_default", 0)
    assert decide({("pod_claim", SA_A): 130}, "ns", 100, 30, False) == (SA_A, "pod_claim", 2)


def test_a_recreated_pod_resolves_to_the_incarnation_created_last_before_the_alert():
    facts = {("pod_create", SA_A): 10, ("pod_create", SA_B): 60}
    assert decide(facts, "ns", 50, 30, False)[0] == SA_A
    assert decide(facts, "ns", 70, 30, False)[0] == SA_B


def test_alerts_are_copied_to_every_bucket_their_window_touches():
    assert list(correlate.buckets(0, 30, 30)) == [0, 1]       # [0, 30] ends on the next bucket's first ms
    assert list(correlate.buckets(5, 30, 30)) == [0, 1]
    assert list(correlate.buckets(5, 30, 10)) == [0, 1, 2, 3]
