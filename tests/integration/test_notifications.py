"""People in the loop on the embedded stack: told once per chain, the same incident
resolved, a channel outage that delays no remediation (issue 13)."""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml

from pipemedic.demo import watch_until_settled
from pipemedic.runtime import send_decision
from pipemedic.stack import DEMO_DATA, EmbeddedStack
from tests.integration.chain_scenarios import gateway_alert, guid, wait_for_state, world
from tests.integration.e2e_helpers import wait_for

pytestmark = pytest.mark.integration

MART_RUN = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c06"  # the demo's never-automate failure
MART_ALERT = (DEMO_DATA / "alerts.jsonl").read_text().splitlines()[6].encode()
DEMO_NOTIFICATIONS = yaml.safe_load((DEMO_DATA / "estate_extras.yaml").read_text())["notifications"]


def extras(**section: object) -> dict:
    """Every chain to PagerDuty and the Slack bot."""
    return {
        "notifications": {
            **DEMO_NOTIFICATIONS,
            "routes": [{"targets": ["oncall", "ops"]}],
            **section,
        }
    }


def test_a_burst_pages_once_and_a_resolved_chain_resolves_the_same_incident(tmp_path):
    approve_me = guid("notify-approve-me")
    runs = {approve_me: "Guarded", MART_RUN: "Publish_Finance_Mart"}
    with EmbeddedStack(
        tmp_path,
        world({"Guarded": ["Succeeded"], "Publish_Finance_Mart": ["Succeeded"]}, runs),
        mode="approval",
        estate_extras=extras(),
    ) as stack:
        receivers = stack.simulator.sim.receivers
        stack.send_raw([MART_ALERT] * 50 + [gateway_alert("Guarded", approve_me)])
        (waiting,) = asyncio.run(wait_for_state(stack.bootstrap, "awaiting_approval", 1, 60))
        wait_for("two triggers", lambda: len(receivers.pagerduty_events("trigger")) >= 2, 60)
        asyncio.run(send_decision(stack.bootstrap, waiting["chain_id"], approve=True, by="alice"))
        watch = asyncio.run(watch_until_settled(stack, timeout_s=90))
        wait_for("the resolve", lambda: receivers.pagerduty_events("resolve"), 30)
        triggers = receivers.pagerduty_events("trigger")
        resolves = receivers.pagerduty_events("resolve")
        slack = dict(receivers.state.slack_messages["C0PIPEMEDIC"])
    assert watch.settled and watch.states["duplicate"] >= 49
    manual_chain = next(c for c, s in watch.chains.items() if s == "manual")
    # one trigger per chain, however many alerts
    assert sorted(t["dedup_key"] for t in triggers) == sorted([manual_chain, waiting["chain_id"]])
    # the approved chain resolved: exactly one resolve, with the key it was triggered with
    assert [(r["event_action"], r["dedup_key"]) for r in resolves] == [
        ("resolve", waiting["chain_id"])
    ]
    assert watch.chains[waiting["chain_id"]] == "resolved"
    # Slack: one message per chain; the resolved one was updated in place
    assert len(slack) == 2 and sorted(m["edits"] for m in slack.values()) == [0, 1]
    notified = [r for r in watch.rows if r["state"] == "notified"]
    assert {(r["action"], r["platform_status"]) for r in notified} == {
        ("notify:oncall", "handed_to_people"),
        ("notify:ops", "handed_to_people"),
        ("notify:oncall", "awaiting_approval"),
        ("notify:ops", "awaiting_approval"),
        ("notify:oncall", "resolved"),
        ("notify:ops", "resolved"),
    }


OUTAGE_S = 20.0  # the 30 s, shortened: the stack's delay tiers are 1, 2 and 3 s


def test_a_receiver_down_delays_the_page_not_the_remediation(tmp_path):
    fix_me = guid("notify-fix-me")
    runs = {fix_me: "Flaky", MART_RUN: "Publish_Finance_Mart"}
    with EmbeddedStack(
        tmp_path,
        world({"Flaky": ["Succeeded"], "Publish_Finance_Mart": ["Succeeded"]}, runs),
        estate_extras=extras(retry_limit=30),
    ) as stack:
        receivers = stack.simulator.sim.receivers
        receivers.set_outage(OUTAGE_S)
        outage_ends = time.time() + OUTAGE_S
        stack.send_raw([MART_ALERT, gateway_alert("Flaky", fix_me)])
        (resolved,) = asyncio.run(wait_for_state(stack.bootstrap, "resolved", 1, 60))
        watch = asyncio.run(watch_until_settled(stack, timeout_s=90))
        delivered = receivers.received("pagerduty", 202)
        refused = receivers.received("pagerduty", 503)
    assert watch.settled
    # remediation went on at its own pace while every channel was down: resolved within
    # seconds of the alert, before the receivers were back
    assert resolved["at"] - resolved["first_seen_at"] < 10_000
    assert resolved["at"] / 1000 < outage_ends
    # the page was refused while the receiver was down, and delivered once it was back
    assert refused and all(r.at < outage_ends for r in refused)
    assert [r.body["event_action"] for r in delivered] == ["trigger"]
    assert delivered[0].at >= outage_ends
    retrying = [r for r in watch.rows if r["state"] == "notify_retrying"]
    assert retrying and all("503" in r["detail"] for r in retrying)
    assert {r["action"] for r in watch.rows if r["state"] == "notified"} == {
        "notify:oncall",
        "notify:ops",
    }
