"""Garbage on an internal topic is dead-lettered with its reason; the worker goes on."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from pipemedic.stack import EmbeddedStack
from streams.policy import routing
from tests.integration.chain_scenarios import gateway_alert, guid, rows_until, rules_file, world

pytestmark = pytest.mark.integration

GARBAGE = b"\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"  # a string length no body has
PREFIX_ONLY = b"\x00trailing bytes"  # parses as an empty batch: the rest must not be ignored
POISONED = (
    routing.CLASSIFIED,
    routing.CHAIN_EVENTS,
    routing.OUTCOMES,
    routing.action_topic("retry_pipeline"),
    "delay-1s",
)


async def _poison(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic in POISONED:
            await producer.send_and_wait(topic, GARBAGE, key=b"poison")
        await producer.send_and_wait(routing.CLASSIFIED, PREFIX_ONLY, key=b"poison")
    finally:
        await producer.stop()


def test_undecodable_internal_messages_are_dead_lettered_and_the_worker_goes_on(tmp_path):
    rules = rules_file(tmp_path, {"GatewayTimeout": [1]})
    with EmbeddedStack(
        tmp_path, world({"P": ["Succeeded"]}, {guid("after-poison"): "P"}), rules_file=rules
    ) as stack:
        stack.worker.wait_ready()
        asyncio.run(_poison(stack.bootstrap))
        letters = asyncio.run(
            rows_until(
                stack.bootstrap,
                lambda found: len(found) >= len(POISONED) + 1,
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
    assert sorted(letter["topic"] for letter in letters) == sorted((*POISONED, routing.CLASSIFIED))
    assert {letter["reason"] for letter in letters} == {"undecodable"}
    assert {bytes(letter["payload"]) for letter in letters} == {GARBAGE, PREFIX_ONLY}
    assert any(r["state"] == "resolved" and r["run_id"] == guid("after-poison") for r in rows)
    assert alive
