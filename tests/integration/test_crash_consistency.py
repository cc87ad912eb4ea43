"""Issue 18 in short: an estate-like burst, the worker killed (SIGKILL) in the middle of it
and restarted. Every failed run ends as one final chain with exactly one rerun; no other chain
appears (a redelivered success or duplicate opens none). ``bench/faults.py`` runs the same
with more load and five kills."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from pipemedic.demo import watch_until_settled
from pipemedic.reporting import read_report
from pipemedic.stack import EmbeddedStack
from tests.integration.estate_load import FINAL, build_load, chain_of

pytestmark = pytest.mark.integration


def burst(tmp_path, *, messages: int, seed: int = 7):
    """The load, its failed runs, and an embedded stack for it: retries 1-3 s after a failure,
    the simulator at 20 ms a call."""
    payloads, world, failed = build_load(factories=3, messages=messages, seed=seed)
    world["latency_ms"] = 20
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps({"schedules": {"GatewayTimeout": [1, 2, 3]}}))
    stack = EmbeddedStack(
        tmp_path / "stack", world, rules_file=rules, mode="automatic", verify_poll_s=1.0
    )
    return payloads, failed, stack


def test_a_kill_mid_burst_loses_no_step_starts_none_twice_and_invents_no_chain(tmp_path):
    payloads, failed, stack = burst(tmp_path, messages=16)
    with stack:
        half = len(payloads) // 2
        stack.send_raw(payloads[:half])
        time.sleep(4)  # the worker is in the middle of the first half
        stack.kill_worker()
        stack.send_raw(payloads[half:])  # more arrives while it is down
        stack.start_new_worker()
        watch = asyncio.run(watch_until_settled(stack, timeout_s=240))
        reruns = Counter(
            c.query.get("referencePipelineRunId")
            for c in stack.simulator.matching("POST", "*/createRun", 200)
        )
        stack.stop_worker()
        _, _, chains = read_report(stack.settings)
    assert watch.settled
    final = {c["chain_id"] for c in chains if c["final_state"] in FINAL}
    expected = {chain_of(run, failed) for run in failed}
    assert final == expected == {c["chain_id"] for c in chains}  # none open, no phantom
    assert set(reruns) == set(failed) and set(reruns.values()) == {1}


def test_two_workers_one_killed_mid_burst_the_other_takes_over_and_nothing_is_lost(tmp_path):
    payloads, failed, stack = burst(tmp_path, messages=10, seed=11)
    with stack:
        second = stack.start_extra_worker()  # the group splits every topic's partitions
        stack.worker.wait_ready()
        second.wait_ready()
        half = len(payloads) // 2
        stack.send_raw(payloads[:half])
        time.sleep(3)
        second.kill()  # its partitions go to the survivor, with the tables' changelogs
        stack.send_raw(payloads[half:])
        # each worker records its share in a chDB of its own: the outcomes topic has them all
        watch = asyncio.run(watch_until_settled(stack, timeout_s=240))
        reruns = Counter(
            c.query.get("referencePipelineRunId")
            for c in stack.simulator.matching("POST", "*/createRun", 200)
        )
        survivor = stack.worker.alive
    log = (tmp_path / "stack" / "worker-1.log").read_text()[-3000:]
    assert watch.settled, f"survivor alive: {survivor}; open: {watch.open_chains}\n{log}"
    final = {c for c, state in watch.chains.items() if state in FINAL}
    assert final == {chain_of(run, failed) for run in failed} == set(watch.chains)
    assert set(reruns) == set(failed) and set(reruns.values()) == {1}
