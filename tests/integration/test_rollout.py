"""Issue 14's scoped rollout on the real stack: one factory, two modes by pipeline."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from pipemedic.stack import EmbeddedStack
from tests.integration.chain_scenarios import gateway_alert, guid, rows_until, world

pytestmark = pytest.mark.integration


def test_the_pilot_scope_acts_and_the_rest_only_observes(tmp_path):
    pilot, other = guid("rollout-pilot"), guid("rollout-other")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "schedules": {"GatewayTimeout": [1]},
                "rollout": [
                    {"name": "pilot", "pipelines": "pilot_*", "mode": "automatic"},
                    {"name": "rest", "mode": "observe"},
                ],
            }
        )
    )
    scenario = world({"Pilot_Load": ["Succeeded"], "Finance_Close": ["Succeeded"]}, {})
    scenario["factories"][0]["runs"] = [
        {"run_id": pilot, "pipeline": "Pilot_Load", "status": "Failed", "message": "504"},
        {"run_id": other, "pipeline": "Finance_Close", "status": "Failed", "message": "504"},
    ]
    with EmbeddedStack(tmp_path, scenario, rules_file=rules, mode="automatic") as stack:
        stack.send_raw([gateway_alert("Pilot_Load", pilot), gateway_alert("Finance_Close", other)])
        rows = asyncio.run(
            rows_until(
                stack.bootstrap,
                lambda rows: (
                    {r["run_id"] for r in rows if r["state"] in ("resolved", "manual")}
                    >= {pilot, other}
                ),
                60,
            )
        )
        writes = stack.simulator.matching("POST", "*")
    by_run = {run: [r for r in rows if r["run_id"] == run] for run in (pilot, other)}
    assert [r["state"] for r in by_run[pilot]][-1] == "resolved"
    observed = [r for r in by_run[other] if r["state"] == "observed"]
    assert len(observed) == 1 and "(rollout row 'rest')" in observed[0]["detail"]
    assert "executed" not in {r["state"] for r in by_run[other]}
    # the only platform write is the pilot's rerun: the rest are token requests, reads that
    # ARM makes POSTs (queryPipelineRuns) and messages to people
    platform_writes = [
        c.path.rsplit("/factories/", 1)[-1]
        for c in writes
        if "/providers/Microsoft.DataFactory/" in c.path and "queryPipelineRuns" not in c.path
    ]
    assert platform_writes == ["adf-sales-prod/pipelines/Pilot_Load/createRun"], platform_writes
