"""Issue 14's kill switch on the real stack: a pause holds new actions within 2 s, a resume
lets every held one go, once, and both are in the audit trail."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipemedic.runtime import send_pause
from pipemedic.stack import EmbeddedStack
from tests.integration.chain_scenarios import gateway_alert, guid, rows_until, rules_file, world

pytestmark = pytest.mark.integration


def test_a_pause_holds_new_actions_and_a_resume_lets_each_go_once(tmp_path):
    runs = {guid(f"paused-run-{i}"): "Held" for i in range(3)}
    rules = rules_file(tmp_path, {"GatewayTimeout": [1]})
    with EmbeddedStack(
        tmp_path, world({"Held": ["Succeeded"]}, runs), rules_file=rules, pause_recheck_s=1.0
    ) as stack:
        stack.worker.wait_ready()
        asyncio.run(send_pause(stack.bootstrap, "adf-sales-*", paused=True, by="ana", reason="ARM"))
        time.sleep(2)  # the bar: every worker holds new actions within 2 s of the pause
        stack.send_raw([gateway_alert("Held", run_id) for run_id in runs])
        asyncio.run(
            rows_until(
                stack.bootstrap,
                lambda rows: (
                    {r["run_id"] for r in rows if r["detail"].startswith("paused (")} == set(runs)
                ),
                60,
            )
        )
        time.sleep(3)  # three more rechecks: still nothing may start
        calls_while_paused = stack.simulator.count("POST", "*/createRun")
        asyncio.run(send_pause(stack.bootstrap, "adf-sales-*", paused=False, by="ana"))
        rows = asyncio.run(
            rows_until(
                stack.bootstrap,
                lambda rows: {r["run_id"] for r in rows if r["state"] == "resolved"} >= set(runs),
                60,
            )
        )
        calls = stack.simulator.matching("POST", "*/createRun")
    assert calls_while_paused == 0
    assert sorted(c.query["referencePipelineRunId"] for c in calls) == sorted(runs)
    # one row per held action (not one per recheck), then the run goes on
    paused_rows = [r for r in rows if r["detail"].startswith("paused (scope adf-sales-*)")]
    assert sorted(r["run_id"] for r in paused_rows) == sorted(runs), paused_rows
    control = [(r["state"], r["detail"]) for r in rows if r["state"] in ("paused", "resumed")]
    assert control == [
        ("paused", "paused scope adf-sales-* by ana: ARM"),
        ("resumed", "resumed scope adf-sales-* by ana"),
    ]
