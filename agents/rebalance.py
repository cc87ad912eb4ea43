"""After every rebalance, each stream partition resumes from its last commit - or from its
beginning when the group never committed one.

Faust re-reads from the committed offsets when a rebalance completes (``perform_seek``),
counting on that to redeliver what it fetched meanwhile: its channel queues are cleared when
flow control resumes, so records fetched into them during the rebalance are dropped.
aiokafka's ``seek_to_committed`` seeks only partitions that have a committed offset, so on a
partition the group never committed the consumer kept the position it had reached and the
dropped records were skipped for good. Seen after a ``kill -9``
(``tests/integration/test_chains.py``, 1 run in ~10 on a loaded machine): the new worker never
fired retries held in ``delay-8s``, never ran an action request produced while it joined,
never recorded the rows before them - all on partitions with no commit, while every
committed partition was re-read as it should be.

So once a rebalance is over (flow resumed, tables recovered: the last clear is behind us),
the never-committed stream partitions go back to their earliest offset, where
``auto_offset_reset=earliest`` starts a new group. What was already processed there since the
rebalance is redelivered: every stage is idempotent, as redelivery after a crash requires
anyway. Changelog partitions are Faust's table recovery's own business and are left alone.
A timer looks for the end of a rebalance (Faust signals its completion only before its own
seek and the final resume).
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


CHECK_S = 0.1  # how often the timer looks whether a rebalance has ended


def rebalance_over(app: Any, done_generation: int | None) -> int | None:
    """The generation whose rebalance has just ended and was not handled yet, if any."""
    generation = app.consumer_generation_id
    if generation == done_generation or app.rebalancing or app.in_recovery:
        return None
    if not app.tables.recovery.completed.is_set():
        return None
    return generation


def register(topology: Topology) -> None:
    app = topology.app
    handled: list[int | None] = [None]

    @app.timer(interval=CHECK_S)
    async def from_last_commit() -> None:
        generation = rebalance_over(app, handled[0])
        if generation is None:
            return
        handled[0] = generation
        fresh = await reread_never_committed(app.consumer)
        if fresh:
            log.info(
                "rebalance %s: %d never-committed partitions read from their beginning",
                generation,
                len(fresh),
            )
