"""After a rebalance, never-committed stream partitions are read from their beginning."""

from __future__ import annotations

from aiokafka.structs import TopicPartition as TP

from agents.rebalance import never_committed, reread_never_committed


class Consumer:
    """What the seek reads of Faust's consumer: committed offsets, earliest offsets, seeks."""

    def __init__(self, committed):
        self.committed = committed
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self):
        return set(self.committed)

    async def seek_to_committed(self):
        return dict(self.committed)

    async def earliest_offsets(self, *tps):
        return {tp: 7 for tp in tps}  # retention removed the first seven

    async def seek(self, tp, offset):
        self.seeks.append((tp, offset))


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
    assert await reread_never_committed(consumer) == [TP("delay-8s", 0), TP("outcomes", 2)]
    assert consumer.seeks == [(TP("delay-8s", 0), 7), (TP("outcomes", 2), 7)]


async def test_nothing_assigned_nothing_sought():
    consumer = Consumer({})
    assert await reread_never_committed(consumer) == [] and consumer.seeks == []
