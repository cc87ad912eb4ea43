"""Small pieces every agent uses: the batch loop, dead-lettering, concurrency, table expiry.

Sending (batched effects, routed requests) lives in :mod:`agents.outbox`. The time comes from
``topology.clock`` (:mod:`streams.clock`) and is handed to the pure policy as ``now_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from mode import CrashingSupervisor

from agents.outbox import partition_for, send_outcomes
from streams.app import Topology
from streams.codecs import Undecodable, decode_items, encode
from streams.policy.expiry import ExpiryIndex
from streams.policy.expiry import sweep as sweep_expired
from streams.policy.ids import event_id
from streams.policy.model import (
    DeadLetter,
    Header,
    Outcome,
    OutcomeState,
)

log = logging.getLogger("pipemedic")

T = TypeVar("T")

# An agent that fails outside its own error handling takes the worker down with it. Faust
# would restart just the agent, but the new one never sees the records its predecessor took
# and did not acknowledge, so the partition would stall silently; a restarted worker reads
# them again from the last commit.
CRASH_WORKER = {"supervisor_strategy": CrashingSupervisor}


def origin_of(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def key_of(message: Any) -> bytes | None:
    key = getattr(message, "key", None)
    return key if isinstance(key, bytes | None) else str(key).encode()


def headers_of(message: Any) -> tuple[Header, ...]:
    """A message's headers, kept with a dead letter for its redrive."""
    headers = getattr(message, "headers", None) or ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple(Header(str(k), bytes(v or b"")) for k, v in pairs)


async def dead_letter_failure(
    topology: Topology, message: Any, exc: Exception, *, audit: bool = True
) -> None:
    """Keep a message whose handling raised. A body that does not decode says so
    (``undecodable``); anything else is a bug of ours, logged with its traceback."""
    if isinstance(exc, Undecodable):
        await dead_letter(topology, message, exc.reason, str(exc), audit=audit)
        return
    log.error("handling failed on %s", origin_of(message), exc_info=exc)
    await dead_letter(topology, message, "internal_error", repr(exc), audit=audit)


async def dead_letter(
    topology: Topology, message: Any, reason: str, error: str, *, audit: bool = True
) -> None:
    """Keep a message we cannot use, with the reason, and count it in the audit trail
    (``audit=False`` for outcome rows themselves: auditing them would feed the same sink)."""
    at = topology.clock.now_ms()
    payload = message.value if isinstance(message.value, bytes) else bytes(message.value or b"")
    letter = DeadLetter(
        reason=reason,
        error=error[:2000],
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        at=at,
        payload=payload,
        key=key_of(message),
        headers=headers_of(message),
    )
    kept = await topology.dead_letter.send(
        key=reason, value=encode("dead_letter", letter.to_dict())
    )
    await kept  # the broker has the letter before a row says it was kept
    where = origin_of(message)
    log.warning("dead-lettered %s: %s (%s)", where, reason, error[:200])
    if not audit:
        return
    row = Outcome(
        event_id=event_id("dead_letter", where),
        at=at,
        chain_id="",
        dedup_key=where,
        state=OutcomeState.DEAD_LETTER.value,
        detail=f"{reason}: {error[:500]}",
    )
    await send_outcomes(topology, (row,))


async def each_batch(
    topology: Topology,
    stream: Any,
    record: str,
    parse: Callable[[dict[str, Any]], T],
    handle: Callable[[int, list[T]], Awaitable[None]],
    *,
    lane: str | None = None,
) -> None:
    """The loop of a batch stage: each message's items are decoded as ``record`` and handed to
    ``handle`` with the message's partition. A message that does not decode, or whose handling
    raised, is dead-lettered with the reason and the stage goes on. ``lane``: the logical topic
    the stage reads, when its topic is shared (other lanes' messages are passed over)."""
    async for event in stream.events():
        if not topology.carries(lane, event):
            continue
        try:
            batch = [parse(item) for item in decode_items(record, event.value)]
            await handle(event.message.partition, batch)
        except Exception as exc:
            await dead_letter_failure(topology, event.message, exc)


class InFlight:
    """The events being handled right now, by topic partition.

    When a rebalance takes partitions away, the new owner reads them again from their last
    commit, so an action still running here would run there too: two workers each looking
    for the rerun the other is about to start, finding none, and both starting one. Faust
    waits for its ``on_partitions_revoked`` handlers before the group moves on, so waiting
    there for the revoked partitions' events to end keeps an action on one worker at a time
    (up to ``timeout_s``: a platform call that hangs longer is bounded by its own timeout).
    """

    def __init__(self) -> None:
        self.by_tp: dict[Any, set[asyncio.Task[None]]] = {}

    def add(self, tp: Any, task: asyncio.Task[None]) -> None:
        tasks = self.by_tp.setdefault(tp, set())
        tasks.add(task)
        task.add_done_callback(lambda done: self._discard(tp, done))

    def _discard(self, tp: Any, task: asyncio.Task[None]) -> None:
        tasks = self.by_tp.get(tp)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self.by_tp[tp]

    async def settle(self, revoked: Any, timeout_s: float) -> int:
        """Wait for the events of the ``revoked`` partitions to end; returns how many were
        still running at the timeout."""
        tasks = {task for tp in revoked for task in self.by_tp.get(tp, ())}
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return len(pending)


class InOrderAcks:
    """Acknowledges a stream's events in offset order per partition, whatever order their
    handling ends in.

    Faust 0.15 commits over an unacknowledged event at the head of a partition when the one
    after it is acknowledged first, and over anything on a partition with no commit yet
    (``Consumer._new_offset``; faust-streaming/faust#606, still open): a stage that acks out of
    order could see a crash lose the event it was still handling. Handed acks in offset order
    only, Faust always sees a contiguous run and commits no further than the oldest event
    still in hand.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream  # a ``noack()`` stream
        # partition -> offset -> event, in offset order: the events taken and not acknowledged
        self.taken: dict[Any, dict[int, Any]] = {}
        self.finished: dict[Any, set[int]] = {}  # partition -> offsets whose handling ended

    def take(self, event: Any) -> None:
        """``event`` was taken from the stream (call in the order the stream gives them).

        An offset at or before one already taken means the partition was sent back (after a
        rebalance, :mod:`agents.rebalance`): the events taken from there on come again, and
        the copies in hand are dropped, never to be acknowledged: acknowledging one of them
        would let Faust commit past the earlier records now being read again."""
        message = event.message
        tp = (message.topic, message.partition)
        taken = self.taken.setdefault(tp, {})
        if taken and next(reversed(taken)) >= message.offset:
            finished = self.finished.get(tp, set())
            for offset in [o for o in taken if o >= message.offset]:
                del taken[offset]
                finished.discard(offset)
        taken[message.offset] = event

    async def done(self, event: Any) -> None:
        """``event``'s handling ended: acknowledge it once every earlier one of its partition
        is acknowledged (with those of them that ended already). An event forgotten
        (rebalance) or superseded (its partition sent back) is not acknowledged: its partition
        is read again from before it."""
        message = event.message
        tp = (message.topic, message.partition)
        taken = self.taken.get(tp)
        if taken is None or taken.get(message.offset) is not event:
            return
        finished = self.finished.setdefault(tp, set())
        finished.add(message.offset)
        ready = []
        for offset, head in taken.items():
            if offset not in finished:
                break
            ready.append(head)
        for head in ready:
            del taken[head.message.offset]
            finished.discard(head.message.offset)
        if not taken:
            del self.taken[tp]
            self.finished.pop(tp, None)
        for head in ready:  # Stream.ack records the ack before it yields: order is kept
            await self.stream.ack(head)

    def forget(self) -> None:
        """Drop every event taken and not acknowledged: after a rebalance they are read again
        from their partition's last commit, by whichever worker owns it then."""
        self.taken.clear()
        self.finished.clear()

    def waiting(self) -> int:
        return sum(len(taken) for taken in self.taken.values())


class KeyTurns:
    """One holder at a time per key, the others waiting in arrival order; a key's lock lives
    only while someone holds it or waits for it."""

    def __init__(self) -> None:
        self.turns: dict[Any, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Any) -> AsyncIterator[None]:
        lock, waiting = self.turns.get(key) or (asyncio.Lock(), 0)
        self.turns[key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self.turns[key]
            if waiting > 1:
                self.turns[key] = (lock, waiting - 1)
            else:
                del self.turns[key]


async def run_concurrently(
    topology: Topology,
    stream: Any,
    limit: int,
    handle: Any,
    in_flight_by_tp: InFlight | None = None,
    *,
    lane: str | None = None,
) -> None:
    """Handle up to ``limit`` events at once; each is acknowledged when its handling ends and
    every earlier event of its partition is acknowledged (:class:`InOrderAcks`), so an event
    still in flight holds its partition's commit back and a crash redelivers it.
    ``in_flight_by_tp`` tracks the events by partition, for a rebalance to wait on
    (:class:`InFlight`). ``lane``: the logical topic this stage reads, when its topic is shared
    (the compact topic profile); events of other lanes are passed over.
    """
    manual = stream.noack()
    acks = InOrderAcks(manual)
    slots = asyncio.Semaphore(limit)
    in_flight: set[asyncio.Task[None]] = set()
    # records of one key (one chain) run one after another, in offset order: two copies of a
    # request arriving together must not both look, find nothing begun, and both act
    turns = KeyTurns()

    async def one(event: Any) -> None:
        try:
            async with turns.hold(event.message.key):
                await handle(event)
        except Exception as exc:
            await dead_letter_safely(event.message, exc)
        finally:
            slots.release()
            await acks.done(event)

    async def dead_letter_safely(message: Any, exc: Exception) -> None:
        try:
            await dead_letter_failure(topology, message, exc)
        except Exception:
            log.exception("could not dead-letter %s", origin_of(message))

    try:
        async for event in manual.events():
            acks.take(event)
            if not topology.carries(lane, event):
                await acks.done(event)
                continue
            await slots.acquire()
            task = asyncio.create_task(one(event))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            if in_flight_by_tp is not None:
                in_flight_by_tp.add(event.message.tp, task)
    finally:
        if in_flight:
            await asyncio.wait(in_flight, timeout=10)


class TableExpiry:
    """Keeps a table within its horizon (see :mod:`streams.policy.expiry`).

    ``expires_at`` reads the expiry time out of a stored value. Must be used inside the
    event that belongs to ``partition``: deletes then go to that changelog partition.
    """

    def __init__(self, table: Any, partitions: int, expires_at: Any) -> None:
        self.table = table
        self.partitions = partitions
        self.expires_at = expires_at
        self.index = ExpiryIndex()

    def partition_of(self, key: str) -> int:
        return partition_for(key, self.partitions)

    def sweep(self, partition: int, now: int) -> int:
        if self.index.needs_load(partition):  # what the changelog restored is not indexed yet
            restored = ((k, self.expires_at(v)) for k, v in self.table.items() if v)
            self.index.load(
                partition, ((k, at) for k, at in restored if self.partition_of(k) == partition)
            )

        def stored_expiry(key: str) -> int | None:
            value = self.table.get(key)
            return self.expires_at(value) if value else None

        return sweep_expired(self.index, partition, now, stored_expiry, self.table.pop)

    def remember(self, partition: int, key: str, value: Any) -> None:
        self.index.add(partition, self.expires_at(value), key)
