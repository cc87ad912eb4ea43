"""After every rebalance, each stream partition resumes from its last commit - or from its
beginning when the group never committed one.

Faust re-reads from the committed offsets once a rebalance is complete (``perform_seek``),
counting on that to redeliver whatever it fetched and then dropped while partitions were
paused or flow was suspended for table recovery. aiokafka's ``seek_to_committed`` seeks only
partitions with a committed offset, so a partition the group never committed kept the
position it had reached: records fetched and dropped during recovery were skipped for good.
Seen after a ``kill -9`` (``tests/integration/test_chain_waits.py``): the new worker never fired the
retries held in ``delay-8s`` nor recorded the outcome rows before it, all on partitions with no
commit, while every committed partition was re-read as it should be.

So, when Faust signals the rebalance complete (partitions still paused, before its own
seek), the never-committed stream partitions are sent back to their beginning, the same
place ``auto_offset_reset=earliest`` would start a new group. Not later: once flow resumes the
worker processes those partitions, and sending them back then would redeliver all of it (tried:
duplicate rows and dead letters in every scenario). A record that reaches a partition
between this signal and the end of the rebalance can still be fetched and dropped, whether
the partition was committed or not (seen: a ``kill -9`` of one of two workers, where the
verification results the survivor sent itself during its own rebalance never reached its
chains stage, a committed partition). So :class:`SkippedRecords` watches the first record a
stream takes from every stream partition, from the offset it resumes at (its commit, or its
beginning): if it is past that offset, what lies between was dropped, and the partition is
sent back again (the few records already taken are read twice). When the
dropped records were the partition's last (a single held retry, seen with the compact
profile's one ``delays`` topic after a ``kill -9``; or the last raw message of a partition the
survivor read from its beginning, after records 0-6 reached the stream and 7 never did), no
later record comes to tell: so for a while after the rebalance (``CHECK_AFTER_S``, then at
doubling intervals) a partition whose consumer position is past the next offset a stream
should take was fetched and dropped, and is sent back too.
Faust itself passes over a record a stream fetched before a rebalance, or while flow was
suspended, and acknowledges it (its stream iterator), so the commit can pass a record no stage
ever took: an acknowledgement of a record no stream took is remembered, and if the partition
resumed past it, the partition is sent back to it.
Every stage downstream is idempotent, which a redelivery from the last commit requires anyway.
Changelog partitions are Faust's table recovery's own business and are left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust import Sensor

from agents.common import log
from streams.app import Topology
from streams.clock import Clock, SystemClock

CHANGELOG_SUFFIX = "-changelog"
# after a rebalance: how long a fetched record may take to reach its stream before a
# partition whose position moved past the offset sought, with nothing taken, is sent back
CHECK_AFTER_S = 5.0
CHECKS = 4  # at 5, 10, 20 and 40 s after the rebalance


def never_committed(committed: Mapping[Any, int | None]) -> list[Any]:
    """The stream partitions (not changelogs) of ``committed`` with no committed offset."""
    return [
        tp
        for tp, offset in committed.items()
        if offset is None and not tp.topic.endswith(CHANGELOG_SUFFIX)
    ]


async def resume_points(consumer: Any) -> tuple[dict[Any, int], dict[Any, int]]:
    """Where each assigned stream partition resumes, and those of them sent back to their
    beginning here (never committed). A committed partition resumes at its commit (Faust's
    own seek puts it there)."""
    if not consumer.assignment():
        return {}, {}
    committed = await consumer.seek_to_committed()
    points = {
        tp: offset
        for tp, offset in committed.items()
        if offset is not None and not tp.topic.endswith(CHANGELOG_SUFFIX)
    }
    fresh = never_committed(committed)
    if not fresh:
        return points, {}
    earliest = await consumer.earliest_offsets(*fresh)
    for tp in fresh:
        await consumer.seek(tp, earliest[tp])
    sought = {tp: earliest[tp] for tp in fresh}
    return {**points, **sought}, sought


class SkippedRecords(Sensor):
    """Records a stream never got, after a rebalance, are read again.

    After a partition resumed at ``offset`` (its commit, or its beginning), the first record a
    stream takes from it must be that one (offsets of a stream topic are contiguous: only
    changelogs, left alone here, are compacted). A later one means the records in between
    were fetched and dropped before flow resumed: the partition is sent back to ``offset``
    once more.

    Records can also be dropped after the first one, or be a partition's last: then no later
    record tells. So for a while after the rebalance (``check_after_s`` and then at doubling
    intervals, ``checks`` times) the consumer's position in each partition is compared with
    the next offset a stream should take (where it resumed, or one past the last record
    taken). A position past it means records were fetched that no stream took: with nothing
    taken at all, the partition goes back at once; otherwise only when a later check finds
    that no stream made progress meanwhile (a busy stage may still have fetched records
    waiting for it).
    """

    def __init__(
        self,
        app: Any,
        clock: Clock | None = None,
        check_after_s: float = CHECK_AFTER_S,
        checks: int = CHECKS,
    ) -> None:
        super().__init__()
        self.app = app  # its consumer is made when the worker starts
        self.clock = clock or SystemClock()
        self.check_after_s = check_after_s
        self.checks = checks
        self.expected: dict[Any, int] = {}  # partitions no stream took a record of yet
        self.next: dict[Any, int] = {}  # the offset a stream should take next, per partition
        self.suspect: dict[Any, int] = {}  # fetched past ``next`` at the last check
        self.unfetched: dict[Any, int] = {}  # the broker had more, not fetched, at the last check
        self.resumed_at: dict[Any, int] = {}  # where each partition resumed at the last rebalance
        self.in_hand: dict[tuple[Any, int], int] = {}  # (partition, offset) taken, not acked
        self.passed_over: dict[Any, int] = {}  # the first offset Faust acked untaken
        self.resought = 0
        self.generation = 0

    def expect(self, positions: Mapping[Any, int]) -> None:
        self.expected = dict(positions)  # a new rebalance: what the last one expected is moot
        self.next = dict(positions)
        self.resumed_at = dict(positions)
        self.in_hand = {}  # what was in hand is read again (or acked late, at no harm)
        self.suspect = {}
        self.unfetched = {}
        self.generation += 1
        if self.expected:
            self._schedule(self.generation, 1, self.check_after_s)

    def _schedule(self, generation: int, round_: int, after_s: float) -> None:
        self.clock.call_later(
            after_s, lambda: asyncio.ensure_future(self._round(generation, round_, after_s))
        )

    async def _round(self, generation: int, round_: int, after_s: float) -> None:
        await self.check(generation)
        if generation == self.generation and round_ < self.checks and self.next:
            self._schedule(generation, round_ + 1, after_s * 2)

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        key = (tp, offset)
        self.in_hand[key] = self.in_hand.get(key, 0) + 1
        if self.passed_over.get(tp) == offset:
            del self.passed_over[tp]  # read again and taken this time
        if tp not in self.next:
            return None
        if offset >= self.next[tp]:
            self.next[tp] = offset + 1
        start = self.expected.pop(tp, None)
        if start is None or offset <= start:
            return None
        self._send_back(tp, start, f"records {start}-{offset - 1} were skipped")
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        """An acknowledgement. Of a record no stream took, it is Faust passing over a record
        fetched before a rebalance (or while flow was suspended) and acknowledging it, which
        lets the partition's commit pass it: remembered, and read again if it was."""
        key = (tp, offset)
        taken = self.in_hand.pop(key, 0)
        if taken > 1:
            self.in_hand[key] = taken - 1
        elif not taken and not tp.topic.endswith(CHANGELOG_SUFFIX):
            self.passed_over[tp] = min(self.passed_over.get(tp, offset), offset)

    async def check(self, generation: int) -> None:
        """Send back each watched partition whose consumer fetched past the next offset a
        stream should take: at once when no stream took a record of it, else when no stream
        took one since the last check either."""
        if generation != self.generation:
            return  # another rebalance since: it has its own checks
        sent = set()
        for tp, offset in list(self.passed_over.items()):
            start = self.resumed_at.get(tp)
            if start is not None and offset < start:  # committed over, never taken
                del self.passed_over[tp]
                self.expected.pop(tp, None)
                sent.add(tp)
                self._send_back(
                    tp, offset, f"records from {offset} were passed over in a rebalance"
                )
        for tp, want in list(self.next.items()):
            if tp in sent:
                continue
            try:
                position = await self.app.consumer.position(tp)
            except Exception:  # e.g. revoked meanwhile: the next rebalance looks again
                log.debug("no position for %s", tp, exc_info=True)
                continue
            if generation != self.generation or self.next.get(tp) != want:
                self.suspect.pop(tp, None)
                continue  # a record came meanwhile (or a rebalance): nothing to do here
            if position is None or position <= want:
                self._stalled(tp, want)
                continue
            if tp in self.expected:
                del self.expected[tp]
                why = f"records {want}-{position - 1} were fetched, none taken"
            elif self.suspect.get(tp) == want:
                why = f"records {want}-{position - 1} were fetched, none taken since"
            else:
                self.suspect[tp] = want  # a busy stage may still take them: look again later
                continue
            self.suspect.pop(tp, None)
            self._send_back(tp, want, why)

    def _stalled(self, tp: Any, want: int) -> None:
        """Not fetched past what the streams took: fine, unless the broker has more and two
        checks in a row saw no fetch (a partition left paused): said, for an operator."""
        try:
            end = self.app.consumer.highwater(tp)
        except Exception:
            end = None
        self.suspect.pop(tp, None)
        if end is None or end <= want:
            self.unfetched.pop(tp, None)
        elif self.unfetched.get(tp) == want:
            log.warning("%s: records from %d up to %d are not being fetched", tp, want, end)
        else:
            self.unfetched[tp] = want  # the fetch may be on its way: look again later

    def _send_back(self, tp: Any, start: int, why: str) -> None:
        self.resought += 1
        self.next[tp] = start
        log.warning("%s: %s; reading them again", tp, why)
        asyncio.ensure_future(self.app.consumer.seek(tp, start))


def register(topology: Topology) -> SkippedRecords:
    app = topology.app
    skipped = SkippedRecords(app, topology.clock)
    app.sensors.add(skipped)

    @app.on_rebalance_complete.connect
    async def from_last_commit(app: Any, **kwargs: Any) -> None:
        points, sought = await resume_points(app.consumer)
        skipped.expect(points)
        if sought:
            log.info("%d never-committed partitions read from their beginning", len(sought))

    return skipped
