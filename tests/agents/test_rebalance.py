"""After a rebalance, never-committed stream partitions are read from their beginning, and
any stream partition is read again if a stream then skips records."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.structs import TopicPartition as TP

from agents.rebalance import SkippedRecords, never_committed, resume_points
from tests.agents.helpers import ManualClock, settle


class Consumer:
    """What the seek reads of Faust's consumer: committed offsets, earliest offsets, seeks."""

    def __init__(self, committed):
        self.committed = committed
        self.seeks: list[tuple[TP, int]] = []
        self.positions: dict[TP, int] = {}

    def assignment(self):
        return set(self.committed)

    async def seek_to_committed(self):
        return dict(self.committed)

    async def earliest_offsets(self, *tps):
        return {tp: 7 for tp in tps}  # retention removed the first seven

    async def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    async def position(self, tp):
        return self.positions.get(tp)


COMMITTED = {
    TP("delay-8s", 0): None,  # never committed: its held retries were fetched, then dropped
    TP("delay-8s", 1): 12,  # Faust's own seek re-reads from here
    TP("outcomes", 2): None,
    TP("pipemedic-chains-changelog", 0): None,  # table recovery positions these itself
}


def test_only_stream_partitions_without_a_commit_are_picked():
    assert never_committed(COMMITTED) == [TP("delay-8s", 0), TP("outcomes", 2)]


async def test_they_go_back_to_their_earliest_offset():
    consumer = Consumer(COMMITTED)
    _, sought = await resume_points(consumer)
    assert list(sought) == [TP("delay-8s", 0), TP("outcomes", 2)]
    assert consumer.seeks == [(TP("delay-8s", 0), 7), (TP("outcomes", 2), 7)]


async def test_nothing_assigned_nothing_sought():
    consumer = Consumer({})
    assert await resume_points(consumer) == ({}, {}) and consumer.seeks == []


async def test_every_stream_partition_resumes_at_its_commit_or_where_it_was_sent():
    consumer = Consumer(COMMITTED)
    points, sought = await resume_points(consumer)
    assert sought == {TP("delay-8s", 0): 7, TP("outcomes", 2): 7}
    assert points == {**sought, TP("delay-8s", 1): 12}  # changelogs are recovery's own


# ---- records dropped after the seek are noticed and read again ------------------------------


def watch(consumer, clock=None):
    skipped = SkippedRecords(SimpleNamespace(consumer=consumer), clock or ManualClock())
    skipped.expect({TP("delay-8s", 0): 7, TP("outcomes", 2): 7})
    return skipped


async def test_a_first_record_past_the_offset_sought_sends_the_partition_back_again():
    consumer = Consumer(COMMITTED)
    skipped = watch(consumer)
    skipped.on_stream_event_in(TP("delay-8s", 0), 9, None, None)  # 7 and 8 were dropped
    skipped.on_stream_event_in(TP("delay-8s", 0), 10, None, None)  # only the first one counts
    await asyncio.sleep(0)
    assert consumer.seeks == [(TP("delay-8s", 0), 7)] and skipped.resought == 1


async def test_a_partition_read_from_where_it_was_sent_is_left_alone():
    consumer = Consumer(COMMITTED)
    skipped = watch(consumer)
    skipped.on_stream_event_in(TP("outcomes", 2), 7, None, None)
    skipped.on_stream_event_in(TP("outcomes", 2), 9, None, None)  # after 7: no longer watched
    skipped.on_stream_event_in(TP("delay-8s", 1), 40, None, None)  # not expected: not watched
    await asyncio.sleep(0)
    assert consumer.seeks == [] and skipped.resought == 0


async def test_a_committed_partition_whose_first_record_is_past_its_commit_goes_back():
    """Seen: a verification result the survivor of a kill sent itself during its rebalance
    was fetched and dropped on a committed partition; the next record came at its offset+1."""
    consumer = Consumer(COMMITTED)
    skipped = SkippedRecords(SimpleNamespace(consumer=consumer), ManualClock())
    points, _ = await resume_points(consumer)
    consumer.seeks.clear()
    skipped.expect(points)
    skipped.on_stream_event_in(TP("delay-8s", 1), 13, None, None)  # 12 was dropped
    await asyncio.sleep(0)
    assert consumer.seeks == [(TP("delay-8s", 1), 12)] and skipped.resought == 1


async def test_a_new_rebalance_replaces_what_the_last_one_expected():
    consumer = Consumer(COMMITTED)
    skipped = watch(consumer)
    skipped.expect({})  # the partitions went to another worker, or were committed since
    skipped.on_stream_event_in(TP("delay-8s", 0), 30, None, None)
    await asyncio.sleep(0)
    assert consumer.seeks == []


async def test_a_partition_fetched_past_the_offset_sought_with_nothing_taken_goes_back():
    """The dropped records were the partition's last: no later record tells, its position
    does."""
    consumer, clock = Consumer(COMMITTED), ManualClock()
    consumer.positions = {TP("delay-8s", 0): 8, TP("outcomes", 2): 7}  # outcomes: nothing yet
    skipped = watch(consumer, clock)
    await clock.advance(4.9)
    assert consumer.seeks == []  # a fetched record may still be on its way to its stream
    await clock.advance(0.1)
    await settle()
    assert consumer.seeks == [(TP("delay-8s", 0), 7)] and skipped.resought == 1
    assert list(skipped.expected) == [TP("outcomes", 2)]  # still watched for a late record


async def test_a_partition_whose_record_arrived_or_a_newer_rebalance_is_not_checked():
    consumer, clock = Consumer(COMMITTED), ManualClock()
    consumer.positions = {TP("delay-8s", 0): 9, TP("outcomes", 2): 9}
    skipped = watch(consumer, clock)
    skipped.on_stream_event_in(TP("delay-8s", 0), 7, None, None)  # taken where it was sent
    skipped.expect({TP("outcomes", 2): 9})  # a new rebalance: its own offsets and its own check
    await clock.advance(5.0)
    await settle()
    assert consumer.seeks == [] and skipped.resought == 0


async def test_records_fetched_after_the_first_and_never_taken_are_read_again():
    """Seen: a kill -9 of one of two workers; the survivor read a never-committed raw
    partition from its beginning, took records 0-6 and never got 7, the partition's last."""
    consumer, clock = Consumer(COMMITTED), ManualClock()
    skipped = watch(consumer, clock)
    for offset in range(7, 10):
        skipped.on_stream_event_in(TP("delay-8s", 0), offset, None, None)
    consumer.positions = {TP("delay-8s", 0): 11, TP("outcomes", 2): 7}  # 10 fetched, not taken
    await clock.advance(5.0)
    await settle()
    assert consumer.seeks == []  # a busy stage may still take it
    await clock.advance(10.0)
    await settle()
    assert consumer.seeks == [(TP("delay-8s", 0), 10)] and skipped.resought == 1


async def test_a_busy_stage_that_takes_records_between_checks_is_left_alone():
    consumer, clock = Consumer(COMMITTED), ManualClock()
    skipped = watch(consumer, clock)
    skipped.on_stream_event_in(TP("delay-8s", 0), 7, None, None)
    consumer.positions = {TP("delay-8s", 0): 20, TP("outcomes", 2): 7}
    for offset, at in ((8, 5.0), (9, 10.0), (10, 20.0), (11, 40.0)):
        await clock.advance(at - clock.now / 1000)
        await settle()
        skipped.on_stream_event_in(TP("delay-8s", 0), offset, None, None)  # slow, but moving
    await clock.advance(100.0)
    await settle()
    assert consumer.seeks == [] and skipped.resought == 0  # the checks are over


async def test_a_record_faust_acknowledged_without_any_stream_taking_it_is_read_again():
    """Faust passes over a record fetched before a rebalance (or while flow was suspended)
    and acknowledges it: the commit can then pass it, and nothing would ever take it."""
    consumer, clock = Consumer(COMMITTED), ManualClock()
    skipped = SkippedRecords(SimpleNamespace(consumer=consumer), clock)
    skipped.on_stream_event_in(TP("delay-8s", 1), 10, None, None)
    skipped.on_stream_event_out(TP("delay-8s", 1), 10, None, None)  # taken, then acked: fine
    skipped.on_stream_event_out(TP("delay-8s", 1), 11, None, None)  # acked, never taken
    skipped.on_stream_event_out(TP("outcomes", 2), 3, None, None)  # likewise, then read again
    skipped.on_stream_event_in(TP("outcomes", 2), 3, None, None)
    skipped.expect({TP("delay-8s", 1): 12, TP("outcomes", 2): 7})  # the commit passed 11
    consumer.positions = {TP("delay-8s", 1): 12, TP("outcomes", 2): 7}
    await clock.advance(5.0)
    await settle()
    assert consumer.seeks == [(TP("delay-8s", 1), 11)] and skipped.resought == 1


def test_the_sensor_keeps_the_service_it_is():
    """A Faust sensor is a mode Service: an attribute named like one of its methods (``start``
    was one) stops the worker from starting."""
    skipped = SkippedRecords(SimpleNamespace(consumer=None), ManualClock())
    assert all(callable(getattr(skipped, name)) for name in ("start", "stop", "restart"))
