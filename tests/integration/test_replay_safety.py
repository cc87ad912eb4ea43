"""Replaying a captured day into the live pipeline never acts on a failure already handled.

The worker here ignores the replay mark (``replayed_observe_only=False``), so what protects
the platform is the dedup horizon alone: the same failures, replayed with their times
shifted to now, are duplicates of the chains that already closed. Nothing is scheduled,
executed or rerun a second time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipemedic.capture import CaptureRequest, capture, read_capture
from pipemedic.demo import watch_until_settled
from pipemedic.replay import ReplayRequest, replay
from pipemedic.stack import EmbeddedStack
from streams.policy import routing
from tests.integration.chain_scenarios import gateway_alert, guid, world

pytestmark = pytest.mark.integration


def test_replaying_a_handled_day_acts_on_nothing_again(tmp_path: Path) -> None:
    runs = {guid(f"day-{n}"): f"Copy_Day_{n}" for n in range(3)}
    day = world({pipeline: ["Succeeded"] for pipeline in runs.values()}, runs)
    with EmbeddedStack(tmp_path / "run", day, replayed_observe_only=False) as stack:
        stack.send_raw([gateway_alert(pipeline, run) for run, pipeline in runs.items()])
        first = asyncio.run(watch_until_settled(stack, 90))
        assert first.settled and first.states["resolved"] == 3
        acted = {s: first.states[s] for s in ("scheduled", "executed", "resolved")}
        reruns = stack.simulator.count("POST", "*/createRun")
        assert acted["executed"] == reruns == 3

        captured = tmp_path / "day.jsonl"
        with captured.open("wb") as out:
            asyncio.run(capture(stack.bootstrap, CaptureRequest(routing.RAW), out))
        meta, records = read_capture(captured)
        assert len(records) == 3
        asyncio.run(replay(stack.bootstrap, meta, records, ReplayRequest(times="shift")))

        second = asyncio.run(watch_until_settled(stack, 60))
        assert second.settled
        assert {s: second.states[s] for s in acted} == acted  # nothing done a second time
        assert second.states["duplicate"] - first.states["duplicate"] == 3
        assert stack.simulator.count("POST", "*/createRun") == reruns
