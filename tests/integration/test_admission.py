"""Issue 14's limits on the real stack: the daily budget and the caps hold across two workers
(one admission partition decides for both), and a storm holds its actions, tells people once,
then lets every held chain through after a probe, none lost, none twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import yaml

from pipemedic.stack import EmbeddedStack
from tests.integration.chain_scenarios import gateway_alert, guid, rows_until, world

pytestmark = pytest.mark.integration


def rules(tmp_path, **tables):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"schedules": {"GatewayTimeout": [1]}, **tables}))
    return path


def test_the_budget_and_the_caps_hold_exactly_across_two_workers(tmp_path):
    pipelines = ["Alpha", "Beta", "Gamma"]
    runs = {guid(f"limits-{p}-{i}"): p for p in pipelines for i in range(3)}
    caps = [{"name": "two an hour", "per": "target", "limit": 2, "window_s": 3600}]
    with EmbeddedStack(
        tmp_path,
        world({p: ["Succeeded"] for p in pipelines}, runs),
        rules_file=rules(tmp_path, caps=caps),
        daily_cost_cap_usd=1.0,
        action_cost_usd={"retry_pipeline": 0.25},  # four reruns a day
    ) as stack:
        second = stack.start_extra_worker()
        stack.worker.wait_ready()
        second.wait_ready()
        stack.send_raw([gateway_alert(pipeline, run) for run, pipeline in runs.items()])

        def decided(rows):
            resolved = {r["run_id"] for r in rows if r["state"] == "resolved"}
            held = {r["run_id"] for r in rows if "cap 'two an hour'" in r["detail"]}
            refused = {r["run_id"] for r in rows if r["state"] == "manual"}
            return len(resolved) == 4 and len(held | refused) == 5

        rows = asyncio.run(rows_until(stack.bootstrap, decided, 90))
        reruns = Counter(
            c.query["referencePipelineRunId"]
            for c in stack.simulator.matching("POST", "*/createRun", 200)
        )
    assert decided(rows)
    assert sum(reruns.values()) == 4 and set(reruns.values()) == {1}  # the budget, exactly
    per_pipeline = Counter(runs[run] for run in reruns)
    assert max(per_pipeline.values()) <= 2  # the cap, on whichever worker acted
    refused = [r for r in rows if r["state"] == "manual"]
    assert all("daily cost cap: $1.00 of $1.00 spent today" in r["detail"] for r in refused)
    capped = [r for r in rows if "cap 'two an hour'" in r["detail"]]
    assert len({r["run_id"] for r in capped}) == len(capped)  # one row per held action


def test_a_storm_holds_its_actions_tells_people_once_and_then_releases_every_chain(tmp_path):
    runs = {guid(f"storm-{i}"): f"Pipe{i}" for i in range(8)}
    storms = [{"scope": "factory", "distinct": "target", "more_than": 3, "within_s": 4}]
    with EmbeddedStack(
        tmp_path,
        world({p: ["Succeeded"] for p in runs.values()}, runs),
        rules_file=rules(tmp_path, storms=storms),
        admission_recheck_s=1.0,
        storm_probe_s=3.0,
        storm_release_per_s=2.0,
    ) as stack:
        stack.worker.wait_ready()
        stack.send_raw([gateway_alert(pipeline, run) for run, pipeline in runs.items()])

        def all_resolved(rows):
            return {r["run_id"] for r in rows if r["state"] == "resolved"} == set(runs)

        rows = asyncio.run(rows_until(stack.bootstrap, all_resolved, 120))
        calls = stack.simulator.matching("POST", "*/createRun", 200)
    assert all_resolved(rows)
    storm_rows = [r for r in rows if r["state"] == "storm"]
    assert len(storm_rows) == 1 and "4 targets failing" in storm_rows[0]["detail"]
    assert [r["state"] for r in rows].count("storm_over") >= 1
    held = {
        r["run_id"]
        for r in rows
        if r["state"] == "retrying" and r["detail"].startswith("storm on factory")
    }
    assert len(held) == 5  # every failure after the threshold was held, none acted on at once
    reruns = Counter(c.query["referencePipelineRunId"] for c in calls)
    assert set(reruns) == set(runs) and set(reruns.values()) == {1}  # none lost, none twice
