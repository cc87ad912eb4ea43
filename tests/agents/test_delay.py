"""Delay tiers: a batch is held until its last item is due, in offset order, and acknowledged
only after its items were sent on. Topics here record what would be sent; time is a manual
clock, so nothing here waits on a real timer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agents.delay import TierHolds
from streams.codecs import decode, decode_items
from tests.agents.helpers import RecordingTopic, fake_topology, request, settle


class AckLog:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event) -> None:
        self.acked.append(event.message.offset)


def topology():
    return fake_topology(tiers=(5,))


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


async def test_each_batch_goes_when_its_last_item_is_due_and_acks_keep_offset_order():
    topo, acks = topology(), AckLog()
    clock = topo.clock
    holds = TierHolds(topo, acks)
    now = clock.now_ms()
    sent = topo.actions["retry_pipeline"].sent
    await holds.offer(event(0), items(now, 100, 250, prefix="a"))
    await holds.offer(event(1), items(now, 150, prefix="b"))  # due earlier, behind offset 0
    await holds.offer(event(0, partition=1), items(now, 50, prefix="c"))  # its own partition

    await clock.advance(0.149)
    assert [key for key, _, _ in sent] == ["c-0"]
    assert acks.acked == [0] and holds.held == 2
    await clock.advance(0.001)  # b is due: it goes, but is not acknowledged before offset 0
    assert [key for key, _, _ in sent] == ["c-0", "b-0"]
    assert acks.acked == [0] and holds.held == 1
    await clock.advance(0.099)
    assert [key for key, _, _ in sent] == ["c-0", "b-0"]  # a's last item is not due yet
    await clock.advance(0.001)
    assert [key for key, _, _ in sent] == ["c-0", "b-0", "a-0", "a-1"]
    assert acks.acked == [0, 0, 1]  # partition 0 in offset order
    for _, body, _ in sent:
        assert decode("action_request", body)["tier"] == ""  # due: straight to the action
    assert holds.held == 0 and not holds.waiting and clock.pending == 0


async def test_tiers_folded_into_one_topic_each_fire_on_time():
    """The compact profile's one ``delays`` topic: a short wait behind a long one is not
    held back by it (the commit is: offset order)."""
    topo, acks = topology(), AckLog()
    holds = TierHolds(topo, acks)
    now = topo.clock.now_ms()
    sent = topo.actions["retry_pipeline"].sent
    await holds.offer(event(0), items(now, 600_000, prefix="long"))
    await holds.offer(event(1), items(now, 5_000, prefix="short"))
    await topo.clock.advance(5.0)
    assert [key for key, _, _ in sent] == ["short-0"] and acks.acked == []
    await topo.clock.advance(595.0)
    assert [key for key, _, _ in sent] == ["short-0", "long-0"] and acks.acked == [0, 1]


async def test_nothing_fires_early():
    topo, acks = topology(), AckLog()
    holds = TierHolds(topo, acks)
    await holds.offer(event(0), items(topo.clock.now_ms(), 5000, prefix="late"))
    await topo.clock.advance(4.999)
    assert topo.actions["retry_pipeline"].sent == [] and acks.acked == []
    await topo.clock.advance(0.001)
    assert [key for key, _, _ in topo.actions["retry_pipeline"].sent] == ["late-0"]


async def test_a_due_batch_goes_at_once_and_a_longer_wait_hops_on_as_a_batch():
    topo, acks = topology(), AckLog()
    holds = TierHolds(topo, acks)
    now = topo.clock.now_ms()
    batch = items(now, -10, -5, prefix="due")
    batch[1]["due_at"] = now + 60_000  # its hop ended, but it waits another minute
    await holds.offer(event(7), batch)
    assert [key for key, _, _ in topo.actions["retry_pipeline"].sent] == ["due-0"]
    [(key, body, _)] = topo.delays[5].sent
    [again] = decode_items("action_request", body)
    assert key == "due-1" and again["chain_id"] == "due-1" and again["tier"] == "5s"
    assert acks.acked == [7]


class GatedTopic(RecordingTopic):
    """A topic whose sends wait until the test opens the gate, so other messages arrive
    while one is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.sending = asyncio.Event()

    async def send(self, **kwargs):
        self.sending.set()
        await self.gate.wait()
        return await super().send(**kwargs)


async def test_a_message_offered_while_its_partition_is_being_released_still_fires():
    topo, acks = topology(), AckLog()
    slow = topo.actions["retry_pipeline"] = GatedTopic()
    holds = TierHolds(topo, acks)
    now = topo.clock.now_ms()
    await holds.offer(event(0), items(now, 50, prefix="first"))
    await topo.clock.advance(0.05)
    assert slow.sending.is_set()  # the release of offset 0 is under way
    await holds.offer(event(1), items(now, 200, prefix="second"))
    slow.gate.set()
    await settle()
    await topo.clock.advance(0.15)
    sent = [key for key, _, _ in slow.sent]
    assert sent == ["first-0", "second-0"]
    assert acks.acked == [0, 1]
    assert holds.held == 0 and not holds.waiting and not holds.timers


async def test_a_message_with_bad_items_is_dead_lettered_once_and_its_good_items_still_go():
    topo, acks = topology(), AckLog()
    holds = TierHolds(topo, acks)
    batch = items(topo.clock.now_ms(), -10, -10, -10, prefix="mixed")
    del batch[0]["alert"], batch[2]["alert"]  # two items that are not requests
    await holds.offer(event(3), batch)
    assert [key for key, _, _ in topo.actions["retry_pipeline"].sent] == ["mixed-1"]
    assert len(topo.dead_letter.sent) == 1
    assert acks.acked == [3]


async def test_a_rebalance_drops_held_records_unacknowledged_and_their_timers():
    topo, acks = topology(), AckLog()
    holds = TierHolds(topo, acks)
    await holds.offer(event(0), items(topo.clock.now_ms(), 100, prefix="held"))
    holds.forget()
    await topo.clock.advance(1)
    assert topo.actions["retry_pipeline"].sent == [] and acks.acked == []
    assert holds.held == 0 and not holds.waiting
