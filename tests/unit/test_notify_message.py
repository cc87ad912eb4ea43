"""What a person reads, per channel, within each channel's documented limits."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from streams.policy.model import ActionRequest, Alert, Classification
from streams.policy.notify_message import (
    PAGERDUTY_SUMMARY_MAX,
    SLACK_SECTION_MAX,
    SLACK_TEXT_MAX,
    TEAMS_MAX_BYTES,
    compose,
    pagerduty_event,
    slack_message,
    teams_card,
    webhook_body,
)
from streams.policy.signing import (
    approval_query,
    check_approval,
    verify_webhook,
    webhook_headers,
)

FACTORY_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataFactory/factories/f1"
ALERT = Alert(
    alert_id="a1",
    source="adf",
    kind="pipeline_run",
    scope="f1",
    run_id="7f8c6c72-c093-11ec-a83d-0242ac120007",
    pipeline="ingest_orders",
    error_code="2200",
    message="Source blob does not exist",
)
KIND = Classification("UserErrorSourceBlobNotExists", "high", "manual", 0, (), "rule")
REQUEST = ActionRequest(
    action_id="c1#1:notify:handed_to_people",
    chain_id="c1",
    dedup_key="k",
    action="notify",
    step="handed_to_people",
    attempt=3,
    max_attempts=3,
    due_at=0,
    alert=ALERT,
    classification=KIND,
    reason="3 attempts exhausted",
    history=("1: failure", "2: executed retry_pipeline #1"),
)


def test_the_message_carries_what_a_person_needs():
    message = compose(REQUEST, factory_ids={"f1": FACTORY_ID})
    facts = dict(message.facts)
    assert facts["Factory"] == "f1" and facts["Pipeline"] == "ingest_orders"
    assert facts["Run"] == ALERT.run_id and facts["Error type"] == KIND.error_type
    assert facts["Attempts"] == "3 of 3" and facts["Error"] == ALERT.message
    assert message.reason == "3 attempts exhausted"
    assert message.severity == "critical"  # high risk
    assert message.links == (
        (
            "Open run in ADF",
            f"https://adf.azure.com/en-us/monitoring/pipelineruns/{ALERT.run_id}"
            f"?factory={FACTORY_ID}",
        ),
    )


def test_databricks_links_are_the_platforms_own_and_approval_links_are_added():
    alert = replace(
        ALERT, source="databricks", scope="123", details={"run_page_url": "https://x/#job/1/run/2"}
    )
    links = {"approve": "https://pm/approvals/c1?decision=approve"}
    message = compose(replace(REQUEST, alert=alert), approval_links=links)
    assert ("Open run in Databricks", "https://x/#job/1/run/2") in message.links
    assert ("Approve…", links["approve"]) in message.links


HUGE = replace(REQUEST, alert=replace(ALERT, message="x" * 100_000), reason="y" * 50_000)


@pytest.mark.parametrize("request_", [REQUEST, HUGE])
def test_teams_gets_an_adaptive_card_1_4_under_20_kb(request_):
    body = teams_card(compose(request_, factory_ids={"f1": FACTORY_ID}))
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert all(a["type"] == "Action.OpenUrl" for a in card["actions"])
    assert len(json.dumps(body).encode()) <= TEAMS_MAX_BYTES


@pytest.mark.parametrize("request_", [REQUEST, HUGE])
def test_slack_gets_blocks_within_its_limits(request_):
    body = slack_message(compose(request_))
    assert 0 < len(body["text"]) <= SLACK_TEXT_MAX
    assert len(body["blocks"]) <= 50
    for block in body["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SLACK_SECTION_MAX


def test_pagerduty_triggers_with_the_chain_as_key_and_resolves_with_the_same():
    trigger = pagerduty_event(compose(HUGE), "r" * 32)
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "c1"
    payload = trigger["payload"]
    assert len(payload["summary"]) == PAGERDUTY_SUMMARY_MAX
    assert payload["severity"] == "critical" and payload["source"] == "f1"
    resolve = pagerduty_event(compose(replace(REQUEST, step="resolved")), "r" * 32)
    assert resolve == {"routing_key": "r" * 32, "event_action": "resolve", "dedup_key": "c1"}


@pytest.mark.parametrize(("risk", "severity"), [("low", "warning"), ("medium", "error")])
def test_severity_follows_risk(risk, severity):
    request = replace(REQUEST, classification=replace(KIND, risk=risk))
    assert pagerduty_event(compose(request), "r" * 32)["payload"]["severity"] == severity


def test_the_webhook_body_names_chain_and_transition():
    body = webhook_body(compose(REQUEST))
    assert (body["chain_id"], body["transition"]) == ("c1", "handed_to_people")


def test_a_signed_webhook_verifies_and_refuses_tampering_and_replays():
    body = b'{"chain_id":"c1"}'
    headers = webhook_headers(b"secret", "msg_1", 1_700_000_000, body)
    assert headers["webhook-signature"].startswith("v1,")
    assert verify_webhook(b"secret", headers, body, now_s=1_700_000_010) is None
    assert verify_webhook(b"secret", headers, body + b" ", now_s=1_700_000_010) == "bad signature"
    assert verify_webhook(b"other", headers, body, now_s=1_700_000_010) == "bad signature"
    late = verify_webhook(b"secret", headers, body, now_s=1_700_000_000 + 301)
    assert late == "timestamp outside the tolerance"


def test_an_approval_link_is_bound_to_chain_decision_and_expiry():
    query = approval_query(b"k", "c1", "approve", 2_000)
    sig = query["sig"]
    assert check_approval(b"k", "c1", "approve", "2000", sig, now_s=1_000) is None
    assert check_approval(b"k", "c1", "reject", "2000", sig, now_s=1_000) == "tampered"
    assert check_approval(b"k", "c2", "approve", "2000", sig, now_s=1_000) == "tampered"
    assert check_approval(b"k", "c1", "approve", "3000", sig, now_s=1_000) == "tampered"
    assert check_approval(b"k", "c1", "approve", "2000", sig[:-1], now_s=1_000) == "tampered"
    assert check_approval(b"k", "c1", "approve", "2000", sig, now_s=2_000) == "expired"
    assert check_approval(b"", "c1", "approve", "2000", sig, now_s=1_000) is not None
