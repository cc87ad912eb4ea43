"""The daily cost cap: actions that would pass it go to people, also after a restart (the
spend is reserved in the admission table, whose changelog the new worker recovers)."""

from __future__ import annotations

import asyncio

import pytest

from pipemedic.stack import EmbeddedStack
from tests.integration.chain_scenarios import gateway_alert, guid, rows_until, rules_file, world

pytestmark = pytest.mark.integration


def _final(rows: list[dict]) -> dict[str, dict]:
    return {r["run_id"]: r for r in rows if r["state"] in ("manual", "resolved", "gave_up")}


def test_actions_past_the_daily_cap_go_to_people_even_after_a_restart(tmp_path):
    first = {guid(f"cap-run-{i}"): "Costly" for i in range(3)}
    later = {guid(f"cap-late-{i}"): "Costly" for i in range(2)}
    rules = rules_file(tmp_path, {"GatewayTimeout": [1]})
    # retry_pipeline is estimated at $0.40: a $1.00 cap allows two reruns a day
    with EmbeddedStack(
        tmp_path,
        world({"Costly": ["Succeeded"]}, {**first, **later}),
        rules_file=rules,
        daily_cost_cap_usd=1.0,
        action_cost_usd={"retry_pipeline": 0.4},
    ) as stack:
        stack.send_raw([gateway_alert("Costly", run_id) for run_id in first])
        rows = asyncio.run(rows_until(stack.bootstrap, lambda r: len(_final(r)) == 3, 60))
        ended = _final(rows)
        assert sorted(r["state"] for r in ended.values()) == ["manual", "resolved", "resolved"]
        held = [r for r in ended.values() if r["state"] == "manual"]
        assert "daily cost cap: $0.80 of $1.00 spent today" in held[0]["detail"]
        assert stack.simulator.count("POST", "*/createRun") == 2

        # a new worker knows the first one's spend from the admission table's changelog
        stack.kill_worker()
        stack.start_new_worker()
        worker = stack.worker.wait_ready()  # ready: its tables are recovered
        assert worker.metrics()["pipemedic_daily_spend_usd"] == pytest.approx(0.8)
        stack.send_raw([gateway_alert("Costly", run_id) for run_id in later])
        rows = asyncio.run(rows_until(stack.bootstrap, lambda r: len(_final(r)) == 5, 60))
        calls = stack.simulator.count("POST", "*/createRun")
    late = {run: row for run, row in _final(rows).items() if run in later}
    assert {r["state"] for r in late.values()} == {"manual"}, late
    assert all("daily cost cap" in r["detail"] for r in late.values())
    assert calls == 2
