"""Approval mode (rollout phase 2): nothing is done until a person says yes."""

from __future__ import annotations

import asyncio

import pytest

from pipemedic.demo import watch_until_settled
from pipemedic.stack import EmbeddedStack
from tests.integration.chain_scenarios import gateway_alert, guid, rules_file, wait_for_state, world

pytestmark = pytest.mark.integration


def test_actions_wait_for_approval_and_a_rejection_goes_to_people(tmp_path):
    runs = {guid("approve-me"): "Guarded", guid("reject-me"): "Guarded"}
    rules = rules_file(tmp_path, {"GatewayTimeout": [1]})
    with EmbeddedStack(
        tmp_path, world({"Guarded": ["Succeeded"]}, runs), rules_file=rules, mode="approval"
    ) as stack:
        stack.send_raw([gateway_alert("Guarded", run_id) for run_id in runs])
        waiting = asyncio.run(wait_for_state(stack.bootstrap, "awaiting_approval", 2, 60))
        assert len(waiting) == 2
        asyncio.run(asyncio.sleep(3))  # well past the 1 s backoff: still nothing may happen
        assert stack.simulator.count("POST", "*/createRun") == 0
        chains = {row["run_id"]: row["chain_id"] for row in waiting}
        stack.decide(chains[guid("approve-me")], approve=True, by="alice")
        stack.decide(chains[guid("reject-me")], approve=False, by="bob", reason="change freeze")
        watch = asyncio.run(watch_until_settled(stack, timeout_s=90))
        calls = stack.simulator.matching("POST", "*/createRun")
    assert watch.settled
    assert [c.query["referencePipelineRunId"] for c in calls] == [guid("approve-me")]
    assert watch.chains[chains[guid("approve-me")]] == "resolved"
    assert watch.chains[chains[guid("reject-me")]] == "manual"
    details = [r["detail"] for r in watch.rows]
    assert "approved by alice" in details and "rejected by bob: change freeze" in details
