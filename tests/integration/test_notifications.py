"""People in the loop on the embedded stack: told once per chain, the same incident
resolved, a channel outage that delays no remediation (issue 13)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import yaml

from pipemedic.demo import watch_until_settled
from pipemedic.reporting import read_report
from pipemedic.stack import DEMO_DATA, EmbeddedStack
from tests.integration.chain_scenarios import gateway_alert, guid, wait_for_state, world
from tests.integration.e2e_helpers import wait_for

pytestmark = pytest.mark.integration

MART_RUN = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c06"  # the demo's never-automate failure
MART_ALERT = (DEMO_DATA / "alerts.jsonl").read_text().splitlines()[6].encode()
DEMO_NOTIFICATIONS = yaml.safe_load((DEMO_DATA / "estate_extras.yaml").read_text())["notifications"]


def mart_fixed_by_people(rerun_id: str) -> bytes:
    """ADF's diagnostic log of a person's rerun of the never-automate failure succeeding
    (a rerun carries the group of the run it reruns)."""
    record = json.loads(MART_ALERT)["records"][0]
    for name in ("activityRunId", "activityName", "pipelineRunId", "properties"):
        record.pop(name)
    record.update(
        category="PipelineRuns",
        level="Informational",
        status="Succeeded",
        operationName="Publish_Finance_Mart - Succeeded",
        runId=rerun_id,
        groupId=MART_RUN,
        time="${now}",
        end="${now}",
    )
    return json.dumps({"records": [record]}).encode()


def extras(**section: object) -> dict:
    """Every chain to PagerDuty and the Slack bot."""
    return {
        "notifications": {
            **DEMO_NOTIFICATIONS,
            "routes": [{"targets": ["oncall", "ops"]}],
            **section,
        }
    }


def test_a_burst_pages_once_and_resolved_chains_resolve_the_same_incidents(tmp_path):
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
        stack.decide(waiting["chain_id"], approve=True, by="alice")
        wait_for("the resolve", lambda: receivers.pagerduty_events("resolve"), 60)
        # later, people fix the never-automate failure: ADF shows their rerun succeeded
        stack.send_raw([mart_fixed_by_people(guid("notify-mart-rerun"))])
        watch = asyncio.run(watch_until_settled(stack, timeout_s=90))
        wait_for("both resolves", lambda: len(receivers.pagerduty_events("resolve")) == 2, 30)
        triggers = receivers.pagerduty_events("trigger")
        resolves = receivers.pagerduty_events("resolve")
        slack = dict(receivers.state.slack_messages["C0PIPEMEDIC"])
        stack.stop_worker()  # flushes the ClickHouse sink
        _, kpis, chains = read_report(stack.settings)
    assert watch.settled and watch.states["duplicate"] >= 49
    (manual_chain,) = {r["chain_id"] for r in watch.rows if r["state"] == "manual"}
    # one trigger per chain, however many alerts
    assert sorted(t["dedup_key"] for t in triggers) == sorted([manual_chain, waiting["chain_id"]])
    # each chain resolved (approved and fixed by us; fixed by people): exactly one resolve
    # per chain, with the key it was triggered with
    assert [(r["event_action"], r["dedup_key"]) for r in resolves] == [
        ("resolve", waiting["chain_id"]),
        ("resolve", manual_chain),
    ]
    assert watch.chains[waiting["chain_id"]] == watch.chains[manual_chain] == "resolved"
    # Slack: one message per chain, each updated in place when it resolved
    assert len(slack) == 2 and sorted(m["edits"] for m in slack.values()) == [1, 1]
    # the manual fix is measured
    by_people = {c["chain_id"]: c for c in chains}[manual_chain]
    assert (by_people["result"], by_people["resolved_by"]) == ("manual", "people")
    assert kpis["mean_time_to_resolution_manual_ms"] == by_people["time_to_resolution_ms"] > 0
    assert kpis["engineering_hours_saved"] == 0.5  # one remediated chain, 30 minutes
    notified = [r for r in watch.rows if r["state"] == "notified"]
    assert {(r["action"], r["platform_status"]) for r in notified} == {
        ("notify:oncall", "handed_to_people"),
        ("notify:ops", "handed_to_people"),
        ("notify:oncall", "awaiting_approval"),
        ("notify:ops", "awaiting_approval"),
        ("notify:oncall", "resolved"),
        ("notify:ops", "resolved"),
    }
    assert sum(r["platform_status"] == "resolved" for r in notified) == 4  # 2 chains x 2


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
