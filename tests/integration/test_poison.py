"""Garbage on an internal topic is dead-lettered with its reason; the worker goes on.

On the compact profile's shared topics each garbage message names its lane, and one without a
lane is dead-lettered once (by the topic's first lane), not passed over by every stage."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from pipemedic.stack import EmbeddedStack
from streams.policy import routing
from tests.integration.chain_scenarios import gateway_alert, guid, rows_until, rules_file, world

# runs on the default and the compact topic profile (tests/integration/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.both_profiles]

GARBAGE = b"\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"  # a string length no body has
PREFIX_ONLY = b"\x00trailing bytes"  # parses as an empty batch: the rest must not be ignored
POISONED = (
    routing.CLASSIFIED,
    routing.CHAIN_EVENTS,
    routing.OUTCOMES,
    routing.action_topic("retry_pipeline"),
    "delay-1s",
)


def _sends(profile: str) -> list[tuple[str, list | None, bytes]]:
    """(topic, headers, body) of every poisoned message, in ``profile``."""
    sends = [(*routing.destination(name, profile), GARBAGE) for name in POISONED]
    sends.append((*routing.destination(routing.CLASSIFIED, profile), PREFIX_ONLY))
    if profile == routing.COMPACT_PROFILE:  # a lane nobody named, on each shared topic
        sends += [(routing.STAGES, None, GARBAGE), (routing.ACTIONS, None, GARBAGE)]
    return sends


async def _poison(bootstrap: str, sends: list[tuple[str, list | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, headers, body in sends:
            await producer.send_and_wait(topic, body, key=b"poison", headers=headers)
    finally:
        await producer.stop()


def test_undecodable_internal_messages_are_dead_lettered_and_the_worker_goes_on(tmp_path):
    rules = rules_file(tmp_path, {"GatewayTimeout": [1]})
    with EmbeddedStack(
        tmp_path, world({"P": ["Succeeded"]}, {guid("after-poison"): "P"}), rules_file=rules
    ) as stack:
        stack.worker.wait_ready()
        sends = _sends(stack.settings.topic_profile)
        asyncio.run(_poison(stack.bootstrap, sends))
        letters = asyncio.run(
            rows_until(
                stack.bootstrap,
                lambda found: len(found) >= len(sends),
                30,
                topic=routing.DEAD_LETTER,
                record="dead_letter",
            )
        )
        stack.send_raw([gateway_alert("P", guid("after-poison"))])
        rows = asyncio.run(
            rows_until(
                stack.bootstrap, lambda found: any(r["state"] == "resolved" for r in found), 60
            )
        )
        alive = stack.worker.alive
    assert sorted(letter["topic"] for letter in letters) == sorted(topic for topic, _, _ in sends)
    assert {letter["reason"] for letter in letters} == {"undecodable"}
    assert {bytes(letter["payload"]) for letter in letters} == {GARBAGE, PREFIX_ONLY}
    assert any(r["state"] == "resolved" and r["run_id"] == guid("after-poison") for r in rows)
    assert alive
