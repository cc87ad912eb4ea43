"""Signed approval links on the worker's web port, and approvals that expire (issue 13)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from pipemedic.approvals import waiting_now
from pipemedic.demo import watch_until_settled
from pipemedic.embedded import free_port
from pipemedic.stack import EmbeddedStack
from streams.policy.signing import approval_links
from tests.integration.chain_scenarios import gateway_alert, guid, wait_for_state, world
from tests.integration.e2e_helpers import wait_for
from tests.integration.test_notifications import DEMO_NOTIFICATIONS

pytestmark = pytest.mark.integration

SECRET = "approval-test-secret"
TTL_S = 14


def test_links_ask_first_decide_once_and_refuse_tampered_replayed_and_expired(tmp_path):
    approve_me, forget_me = guid("link-approve-me"), guid("link-forget-me")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    extras = {
        "notifications": {
            **DEMO_NOTIFICATIONS,
            "routes": [{"targets": ["oncall", "ops"]}],
            "approval_url": base,
            "approval_ttl_s": TTL_S,
        }
    }
    runs = {approve_me: "Guarded", forget_me: "Guarded"}
    with EmbeddedStack(
        tmp_path,
        world({"Guarded": ["Succeeded"]}, runs),
        mode="approval",
        estate_extras=extras,
        web_port=port,
        approval_secret=SECRET,
    ) as stack:
        receivers = stack.simulator.sim.receivers
        stack.send_raw([gateway_alert("Guarded", approve_me)])
        (waiting,) = asyncio.run(wait_for_state(stack.bootstrap, "awaiting_approval", 1, 60))
        chain = waiting["chain_id"]
        (trigger,) = wait_for("the page", lambda: receivers.pagerduty_events("trigger"), 30)
        links = {link["text"]: link["href"] for link in trigger["links"]}
        approve = links["Approve…"]
        assert approve.startswith(f"{base}/approvals/")
        # pipemedic approvals: from the chains table's changelog, as the workers keep it
        listed = wait_for("the listing", lambda: waiting_now(stack.settings, on_stack), 20)
        stack.send_raw([gateway_alert("Guarded", forget_me)])  # nobody will decide this one
        with httpx.Client(timeout=10) as http:
            # a decision changed in the link (the signature was for approve)
            tampered = http.get(approve.replace("decision=approve", "decision=reject"))
            # a link for the right chain, signed with the right secret, but expired
            old = approval_links(SECRET.encode(), base, chain, int(time.time()) - 1)["approve"]
            expired = http.get(old)
            # a preview bot, then the person: GET shows the question, changes nothing
            previews = [http.get(approve) for _ in range(3)]
            time.sleep(1)
            assert stack.simulator.count("POST", "*/createRun") == 0
            decided = http.post(without_query(approve), data=query_of(approve))
            watch_one = asyncio.run(wait_for_state(stack.bootstrap, "resolved", 1, 60))
            replayed = http.post(without_query(approve), data=query_of(approve))
        watch = asyncio.run(watch_until_settled(stack, timeout_s=90))
        expired_told = receivers.pagerduty_events("trigger")
        calls = stack.simulator.count("POST", "*/createRun")
    (waiting_one,) = listed
    assert (waiting_one.chain_id, waiting_one.action, waiting_one.attempt) == (
        chain,
        "retry_pipeline",
        1,
    )
    assert waiting_one.pipeline == "Guarded" and waiting_one.run_id == approve_me
    assert 0 < waiting_one.expires_ms - waiting_one.since_ms <= TTL_S * 1000
    assert (tampered.status_code, expired.status_code) == (403, 410)
    assert "changed or not issued" in tampered.text and "expired" in expired.text
    assert {p.status_code for p in previews} == {200} and '<form method="post">' in previews[0].text
    assert previews[0].headers["Cache-Control"] == "no-store"
    assert decided.status_code == 202 and watch_one[0]["chain_id"] == chain
    assert replayed.status_code == 409 and "already decided" in replayed.text
    assert calls == 1  # applied once
    assert watch.settled and watch.chains[chain] == "resolved"
    refused = [r["detail"] for r in watch.rows if r["state"] == "approval_refused"]
    assert sorted(d.split(":")[0] for d in refused) == ["decided", "expired", "tampered"]
    assert any(r["detail"] == "approved by approval link" for r in watch.rows)
    # the undecided approval expired: recorded once, handed to people, told once as an update
    forgotten = [c for c, s in watch.chains.items() if c != chain]
    (other,) = forgotten
    assert watch.chains[other] == "manual"
    assert [r["state"] for r in watch.rows if r["chain_id"] == other].count("expired") == 1
    told = [r for r in watch.rows if r["chain_id"] == other and r["state"] == "notified"]
    assert sorted((r["action"], r["platform_status"]) for r in told) == [
        ("notify:oncall", "approval_expired"),
        ("notify:oncall", "awaiting_approval"),
        ("notify:ops", "approval_expired"),
        ("notify:ops", "awaiting_approval"),
    ]
    assert [t["dedup_key"] for t in expired_told].count(other) == 2  # asked, then expired


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def on_stack(settings, exchange):
    """The CLI's broker runner, against the embedded broker."""
    return asyncio.run(exchange(settings.broker_url.removeprefix("kafka://")))
