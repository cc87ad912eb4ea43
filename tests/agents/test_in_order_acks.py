"""Events handled concurrently are acknowledged in offset order per partition.

Faust 0.15 commits over a single unacknowledged event at the head of a partition when the
next one is acknowledged first (faust-streaming/faust#606): a crash would then lose the event
still in hand. These tests hold the handling of the oldest event and check that nothing of
its partition is acknowledged before it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agents.common import InOrderAcks, run_concurrently
from tests.agents.helpers import fake_topology, settle


def event(offset: int, partition: int = 0, key: bytes | None = None):
    message = SimpleNamespace(
        topic="action-retry-pipeline", partition=partition, offset=offset, key=key, value=b""
    )
    return SimpleNamespace(message=message)


class AckLog:
    def __init__(self, events=()) -> None:
        self.acked: list[tuple[int, int]] = []
        self._events = list(events)

    async def ack(self, event) -> None:
        self.acked.append((event.message.partition, event.message.offset))

    def noack(self) -> AckLog:
        return self

    async def events(self):
        for each in self._events:
            yield each


async def test_an_ack_waits_for_every_earlier_event_of_its_partition_only():
    log = AckLog()
    acks = InOrderAcks(log)
    first, second, third, other = event(0), event(1), event(2), event(0, partition=1)
    for each in (first, second, third, other):
        acks.take(each)
    await acks.done(second)
    await acks.done(third)
    assert log.acked == []  # offset 0 is still in hand: nothing after it may be committed
    await acks.done(other)
    assert log.acked == [(1, 0)]  # another partition does not wait
    await acks.done(first)
    assert log.acked == [(1, 0), (0, 0), (0, 1), (0, 2)]
    assert acks.waiting() == 0


async def test_a_forgotten_event_is_never_acknowledged():
    log = AckLog()
    acks = InOrderAcks(log)
    held = event(5)
    acks.take(held)
    acks.forget()  # a rebalance: the partition is read again from its commit
    await acks.done(held)
    assert log.acked == []


async def test_run_concurrently_acknowledges_in_offset_order_whatever_order_handling_ends():
    release = asyncio.Event()
    events = [event(offset, key=f"chain-{offset}".encode()) for offset in range(4)]
    stream = AckLog(events)
    handled: list[int] = []

    async def handle(each) -> None:
        if each.message.offset == 0:
            await release.wait()  # the oldest action is slow
        handled.append(each.message.offset)

    running = asyncio.ensure_future(run_concurrently(fake_topology(), stream, 8, handle))
    await settle()
    assert handled == [1, 2, 3] and stream.acked == []
    release.set()
    await running
    assert handled == [1, 2, 3, 0]
    assert stream.acked == [(0, 0), (0, 1), (0, 2), (0, 3)]


async def test_events_of_another_lane_are_passed_over_in_their_turn():
    events = [event(offset) for offset in range(3)]
    stream = AckLog(events)
    topology = fake_topology()
    topology.carries = lambda lane, each: each.message.offset != 1  # offset 1: another stage's
    handled: list[int] = []

    async def handle(each) -> None:
        handled.append(each.message.offset)

    await run_concurrently(topology, stream, 8, handle, lane="action-retry-pipeline")
    assert handled == [0, 2]
    assert stream.acked == [(0, 0), (0, 1), (0, 2)]


async def test_a_partition_sent_back_drops_the_copies_in_hand_from_there_on():
    """After a rebalance a partition may be sent back (records were skipped): an event taken
    before, at or past the offset it goes back to, comes again and must never be
    acknowledged, or Faust would commit past the records now read again."""
    log = AckLog()
    acks = InOrderAcks(log)
    early = event(3)  # 0-2 were dropped: the first record taken is 3
    acks.take(early)
    again = [event(offset) for offset in range(4)]  # sent back to 0
    for each in again:
        acks.take(each)
    await acks.done(early)
    assert log.acked == []  # a superseded copy: acknowledging it would commit over 0-2
    for each in reversed(again):
        await acks.done(each)
    assert log.acked == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert acks.waiting() == 0


async def test_an_event_forgotten_then_done_after_its_partition_is_taken_again_is_ignored():
    log = AckLog()
    acks = InOrderAcks(log)
    stale = event(5)
    acks.take(stale)
    acks.forget()  # a rebalance; the partition comes back to this worker
    fresh = event(5)
    acks.take(fresh)
    await acks.done(stale)  # the old copy's handling ends late
    assert log.acked == [] and acks.waiting() == 1
    await acks.done(fresh)
    assert log.acked == [(0, 5)]
