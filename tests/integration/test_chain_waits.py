"""Issue 3 on the real embedded stack, waiting without blocking: a long delay tier holds back
neither a short one nor another partition, and retries pending at a ``kill -9`` fire once
after the restart. (Acting once and counting honestly: test_chains.py.)"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipemedic.demo import consumer_lag, watch_until_settled
from pipemedic.stack import EmbeddedStack
from pipemedic.worker import planned_topics
from streams.codecs import decode
from streams.policy import routing
from tests.integration.chain_scenarios import (
    gateway_alert,
    guid,
    manual_request,
    rules_file,
    wait_for_state,
    world,
)

# runs on the default and the compact topic profile (tests/integration/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.both_profiles]


async def _arrivals(
    bootstrap: str, topic: str, expected: int, timeout_s: float
) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
    )
    await consumer.start()
    arrived: dict[str, float] = {}
    try:
        while len(arrived) < expected and time.monotonic() < timeout_s:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for m in messages:
                    arrived.setdefault(
                        decode("action_request", m.value)["chain_id"], time.monotonic()
                    )
    finally:
        await consumer.stop()
    return arrived


async def _hold_and_release(bootstrap: str, profile: str) -> tuple[float, dict[str, float]]:
    manual, _ = routing.destination(routing.action_topic("manual"), profile)
    listening = asyncio.create_task(_arrivals(bootstrap, manual, 3, time.monotonic() + 40))
    long_tier, _ = routing.destination("delay-12s", profile)
    short_tier, _ = routing.destination("delay-5s", profile)  # the same topic when compact
    await asyncio.sleep(1)  # the listener is at the end of the topic
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        start = time.monotonic()
        # the head of partition 0 of the 12 s tier waits the full 12 s...
        key, value = manual_request("long-wait", due_in_s=12, hop_due_in_s=12, tier=12)
        await producer.send_and_wait(long_tier, value, key=key, partition=0)
        # ...while partition 1 of the same tier holds a record that is due in 2 s
        key, value = manual_request("other-partition", due_in_s=2, hop_due_in_s=2, tier=12)
        await producer.send_and_wait(long_tier, value, key=key, partition=1)
        # and the 5 s tier has its own record
        key, value = manual_request("short-tier", due_in_s=5, hop_due_in_s=5, tier=5)
        await producer.send_and_wait(short_tier, value, key=key, partition=0)
    finally:
        await producer.stop()
    return start, await listening


def test_a_long_tier_delays_neither_a_short_tier_nor_another_partition(tmp_path):
    rules = rules_file(tmp_path, {"GatewayTimeout": [5, 12]})
    with EmbeddedStack(tmp_path, world({"P": ["Succeeded"]}, {}), rules_file=rules) as stack:
        stack.worker.wait_ready()
        profile = stack.settings.topic_profile
        start, arrived = asyncio.run(_hold_and_release(stack.bootstrap, profile))
    late = {name: at - start for name, at in arrived.items()}
    assert set(late) == {"long-wait", "other-partition", "short-tier"}, late
    assert 1.9 <= late["other-partition"] < 4.0, late
    assert 4.9 <= late["short-tier"] < 7.5, late
    assert late["long-wait"] >= 11.9, late


async def _lag(stack: EmbeddedStack) -> dict:
    topics = [t for t in planned_topics(stack.settings) if not t.endswith("-changelog")]
    return await consumer_lag(
        stack.bootstrap, stack.settings.app_id, topics, stack.settings.partitions
    )


def test_retries_pending_at_kill_9_fire_once_after_restart(tmp_path):
    runs = {guid(f"kill-run-{i}"): "Revived" for i in range(6)}
    rules = rules_file(tmp_path, {"GatewayTimeout": [8]})
    with EmbeddedStack(
        tmp_path, world({"Revived": ["Succeeded"]}, runs), rules_file=rules
    ) as stack:
        stack.send_raw([gateway_alert("Revived", run_id) for run_id in runs])
        scheduled = asyncio.run(wait_for_state(stack.bootstrap, "scheduled", len(runs), 60))
        assert len(scheduled) == len(runs)
        stack.kill_worker()  # SIGKILL: nothing flushed, nothing committed on the way out
        assert stack.simulator.count("POST", "*/createRun") == 0
        stack.start_new_worker()
        watch = asyncio.run(watch_until_settled(stack, timeout_s=120))
        # if it ever fails to settle again (seen once on CI, 1 in ~14 runs on a loaded machine
        # here): what the new worker had committed against what the topics held
        lag = {} if watch.settled else asyncio.run(_lag(stack))
        # the state survived too: a copy of an alert handled before the kill stays a duplicate
        stack.send_raw([gateway_alert("Revived", guid("kill-run-0"))])
        after = asyncio.run(watch_until_settled(stack, timeout_s=60))
        calls = stack.simulator.matching("POST", "*/createRun")
    assert watch.settled, f"not settled: {watch.line()}; uncommitted (committed, end): {lag}"
    assert after.settled
    assert sorted(c.query["referencePipelineRunId"] for c in calls) == sorted(runs)
    due = {r["chain_id"]: r["due_at"] for r in scheduled}
    fired = {r["chain_id"]: r["at"] for r in watch.rows if r["state"] == "executed"}
    assert set(fired) == set(due) and all(fired[c] >= due[c] for c in due)
    resolved = Counter(r["chain_id"] for r in after.rows if r["state"] == "resolved")
    assert set(resolved) == set(due) and set(resolved.values()) == {1}
    late_copy = [
        r
        for r in after.rows
        if r["run_id"] == guid("kill-run-0") and r["state"] in ("received", "duplicate")
    ]
    assert [r["state"] for r in late_copy][-1] == "duplicate"
