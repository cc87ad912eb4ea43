"""Delay tiers: a batch is held until its last item is due, in offset order, and acknowledged
only after its items were sent on. Topics here record what would be sent."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from agents.delay import TierHolds
from streams.codecs import decode, decode_items
from tests.agents.helpers import RecordingTopic, request


class AckLog:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event) -> None:
        self.acked.append(event.message.offset)


def topology():
    return SimpleNamespace(
        settings=SimpleNamespace(partitions=4),
        tiers=(5,),
        actions={"retry_pipeline": RecordingTopic()},
        delays={5: RecordingTopic()},
    )


def event(offset: int, partition: int = 0):
    message = SimpleNamespace(topic="delay-5s", partition=partition, offset=offset, value=b"")
    return SimpleNamespace(message=message)


def items(now: int, *offsets_ms: int, prefix: str) -> list[dict]:
    out = []
    for i, offset in enumerate(offsets_ms):
        due = now + offset
        item = request(f"{prefix}-{i}", due).to_dict()
        out.append({**item, "tier": "5s", "hop_due_at": due})
    return out


async def test_a_batch_waits_for_its_last_item_and_keeps_offset_order():
    topo, acks = topology(), AckLog()
    holds = TierHolds(topo, acks)
    now = int(time.time() * 1000)
    sent = topo.actions["retry_pipeline"].sent
    await holds.offer(event(0), items(now, 100, 250, prefix="a"))
    await holds.offer(event(1), items(now, 150, prefix="b"))  # due earlier, but behind offset 0
    await holds.offer(event(0, partition=1), items(now, 50, prefix="c"))  # its own partition

    await asyncio.sleep(0.15)
    assert [key for key, _, _ in sent] == ["c-0"]  # partition 0's head is not due yet
    assert acks.acked == [0] and holds.held == 2
    await asyncio.sleep(0.2)
    assert [key for key, _, _ in sent] == ["c-0", "a-0", "a-1", "b-0"]
    assert acks.acked == [0, 0, 1]
    for _, body, _ in sent:
        assert decode("action_request", body)["tier"] == ""  # due: straight to the action
    assert holds.held == 0 and not holds.waiting


async def test_a_due_batch_goes_at_once_and_a_longer_wait_hops_on_as_a_batch():
    topo, acks = topology(), AckLog()
    holds = TierHolds(topo, acks)
    now = int(time.time() * 1000)
    batch = items(now, -10, -5, prefix="due")
    batch[1]["due_at"] = now + 60_000  # its hop ended, but it waits another minute
    await holds.offer(event(7), batch)
    assert [key for key, _, _ in topo.actions["retry_pipeline"].sent] == ["due-0"]
    [(key, body, _)] = topo.delays[5].sent
    [again] = decode_items("action_request", body)
    assert key == "due-1" and again["chain_id"] == "due-1" and again["tier"] == "5s"
    assert acks.acked == [7]


class SlowTopic(RecordingTopic):
    """A topic whose sends take a while, so other messages arrive while one is under way."""

    async def send(self, **kwargs):
        await asyncio.sleep(0.1)
        await super().send(**kwargs)


async def test_a_message_offered_while_its_partition_is_being_released_still_fires():
    topo, acks = topology(), AckLog()
    topo.actions["retry_pipeline"] = SlowTopic()
    holds = TierHolds(topo, acks)
    now = int(time.time() * 1000)
    await holds.offer(event(0), items(now, 50, prefix="first"))
    await asyncio.sleep(0.08)  # the release of offset 0 is now sending (it takes 0.1 s)
    await holds.offer(event(1), items(now, 200, prefix="second"))
    await asyncio.sleep(0.4)
    sent = [key for key, _, _ in topo.actions["retry_pipeline"].sent]
    assert sent == ["first-0", "second-0"]
    assert acks.acked == [0, 1]
    assert holds.held == 0 and not holds.waiting and not holds.timers


async def test_a_message_with_bad_items_is_dead_lettered_once_and_its_good_items_still_go():
    topo, acks = topology(), AckLog()
    topo.dead_letter, topo.outcomes = RecordingTopic(), RecordingTopic()
    holds = TierHolds(topo, acks)
    now = int(time.time() * 1000)
    batch = items(now, -10, -10, -10, prefix="mixed")
    del batch[0]["alert"], batch[2]["alert"]  # two items that are not requests
    await holds.offer(event(3), batch)
    assert [key for key, _, _ in topo.actions["retry_pipeline"].sent] == ["mixed-1"]
    assert len(topo.dead_letter.sent) == 1
    assert acks.acked == [3]
