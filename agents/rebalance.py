"""After every rebalance, each stream partition resumes from its last commit - or from its
beginning when the group never committed one.

Faust re-reads from the committed offsets once a rebalance is complete (``perform_seek``),
counting on that to redeliver whatever it fetched and then dropped while partitions were
paused or flow was suspended for table recovery. aiokafka's ``seek_to_committed`` seeks only
partitions with a committed offset, so a partition the group never committed kept the
position it had reached: records fetched and dropped during recovery were skipped for good.
Seen after a ``kill -9`` (``tests/integration/test_chains.py``): the new worker never fired the
retries held in ``delay-8s`` nor recorded the outcome rows before it, all on partitions with no
commit, while every committed partition was re-read as it should be.

So, when Faust signals the rebalance complete (partitions still paused, before its own
seek), the never-committed stream partitions are sent back to their beginning, the same
place ``auto_offset_reset=earliest`` would start a new group. Not later: once flow resumes the
worker processes those partitions, and sending them back then would redeliver all of it (tried:
duplicate rows and dead letters in every scenario). A record that reaches such a partition
between this signal and the end of the rebalance can still be lost (seen once in a stress
run); closing that window needs a hook Faust does not offer. Every stage downstream is
idempotent, which a redelivery from the last commit requires anyway. Changelog partitions
are Faust's table recovery's own business and are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.common import log
from streams.app import Topology

CHANGELOG_SUFFIX = "-changelog"


def never_committed(committed: Mapping[Any, int | None]) -> list[Any]:
    """The stream partitions (not changelogs) of ``committed`` with no committed offset."""
    return [
        tp
        for tp, offset in committed.items()
        if offset is None and not tp.topic.endswith(CHANGELOG_SUFFIX)
    ]


async def reread_never_committed(consumer: Any) -> list[Any]:
    """Seek the never-committed stream partitions to their beginning; returns them."""
    if not consumer.assignment():
        return []
    fresh = never_committed(await consumer.seek_to_committed())
    if fresh:
        earliest = await consumer.earliest_offsets(*fresh)
        for tp in fresh:
            await consumer.seek(tp, earliest[tp])
    return fresh


def register(topology: Topology) -> None:
    @topology.app.on_rebalance_complete.connect
    async def from_last_commit(app: Any, **kwargs: Any) -> None:
        fresh = await reread_never_committed(app.consumer)
        if fresh:
            log.info("%d never-committed partitions read from their beginning", len(fresh))
