"""Small pieces every agent uses: the clock, sending effects, dead-lettering.

The wall clock is read here and handed to the pure policy as ``now_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from faust.exceptions import ProducerSendError
from mode import CrashingSupervisor

from streams.app import Topology
from streams.codecs import Undecodable, encode, encode_items
from streams.policy import routing
from streams.policy.dedup import dedup_key
from streams.policy.expiry import ExpiryIndex
from streams.policy.expiry import sweep as sweep_expired
from streams.policy.ids import event_id
from streams.policy.model import (
    ActionRequest,
    ChainEvent,
    ClassifiedAlert,
    DeadLetter,
    Outcome,
    OutcomeState,
)
from streams.policy.steps import Effects

log = logging.getLogger("pipemedic")

# An agent that fails outside its own error handling takes the worker down with it. Faust
# would restart just the agent, but the new one never sees the records its predecessor took
# and did not acknowledge, so the partition would stall silently; a restarted worker reads
# them again from the last commit.
CRASH_WORKER = {"supervisor_strategy": CrashingSupervisor}


def now_ms() -> int:
    return int(time.time() * 1000)


def origin_of(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as aiokafka and the Java client)
    gives ``key``: a batch sent there lands where each of its items would have alone."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# waits before sending again what the producer gave up on (broker unreachable)
SEND_RETRIES_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class Outbox:
    """The messages one step produces, gathered so that each partition of the busy topics
    (classified alerts, chain events, outcomes) gets one batch message per step.

    Items keep their order within a partition, which is all Kafka promised for single
    messages too. Action requests stay one message each: executors and delay tiers act on
    them one by one. ``flush`` sends; callers write their tables only after it. A send the
    producer gives up on (broker unreachable past its own retries) is tried again after
    ``retry_delays_s``; what was sent already is not sent again.
    """

    def __init__(
        self, topology: Topology, retry_delays_s: tuple[float, ...] = SEND_RETRIES_S
    ) -> None:
        self.topology = topology
        self.retry_delays_s = retry_delays_s
        self.partitions = topology.settings.partitions
        self.classified: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self.chain_events: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self.outcomes: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[tuple[ActionRequest, int]] = []

    def add_classified(self, record: ClassifiedAlert) -> None:
        key = dedup_key(record.alert)
        self.classified.setdefault(partition_for(key, self.partitions), []).append(
            (key, record.to_dict())
        )

    def add_chain_event(self, event: ChainEvent) -> None:
        key = event.chain_id
        self.chain_events.setdefault(partition_for(key, self.partitions), []).append(
            (key, event.to_dict())
        )

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        self.outcomes.extend((o.chain_id or o.dedup_key, o.to_dict()) for o in outcomes)

    def add_request(self, request: ActionRequest, *, now: int) -> None:
        self.requests.append((request, now))

    def add_effects(self, effects: Effects, *, now: int) -> None:
        for alert in effects.alerts:
            self.add_classified(alert)
        for event in effects.chain_events:
            self.add_chain_event(event)
        for request in effects.requests:
            self.add_request(request, now=now)
        self.add_outcomes(effects.outcomes)

    async def flush(self) -> None:
        for delay_s in (*self.retry_delays_s, None):
            try:
                await self._send_pending()
                return
            except _SEND_ERRORS as exc:
                if delay_s is None:
                    raise
                log.warning("send failed (%r); again in %gs", exc, delay_s)
                await asyncio.sleep(delay_s)

    async def _send_pending(self) -> None:
        topology = self.topology
        for partition in list(self.classified):
            items = self.classified[partition]
            await _send_batch(topology.classified, "classified_alert", items, partition)
            del self.classified[partition]
        for partition in list(self.chain_events):
            items = self.chain_events[partition]
            await _send_batch(topology.chain_events, "chain_event", items, partition)
            del self.chain_events[partition]
        while self.requests:
            request, now = self.requests[0]
            await send_request(topology, request, now=now)
            self.requests.pop(0)
        if self.outcomes:  # the sink keeps no state: any partition will do
            await _send_batch(topology.outcomes, "outcome", self.outcomes, None)
            self.outcomes = []


class SharedOutbox:
    """One :class:`Outbox` for many concurrent steps: what steps finish within ``linger_s``
    of each other is sent together, so the stages downstream get a few full batches
    instead of one small message per step. ``send`` returns once the effects are handed to
    the producer; the caller acknowledges its record only then.
    """

    def __init__(
        self,
        topology: Topology,
        linger_s: float = 0.01,
        retry_delays_s: tuple[float, ...] = SEND_RETRIES_S,
    ) -> None:
        self.topology = topology
        self.linger_s = linger_s
        self.retry_delays_s = retry_delays_s
        self._outbox = Outbox(topology, retry_delays_s)
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def send(self, effects: Effects, *, now: int) -> None:
        self._outbox.add_effects(effects, now=now)
        sent = asyncio.get_running_loop().create_future()
        self._waiters.append(sent)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_soon())
        await sent

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.linger_s)
        outbox, waiters = self._outbox, self._waiters
        fresh = Outbox(self.topology, self.retry_delays_s)
        self._outbox, self._waiters, self._flusher = fresh, [], None
        try:
            await outbox.flush()
        except Exception as exc:  # every step whose effects were in it must know
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


# what a producer raises once it has given up on a send (after its own retries)
_SEND_ERRORS = (ProducerSendError, KafkaError, OSError)

# Kafka's default and Event Hubs' hard limit per message is 1 MB: stay well below it
MAX_BATCH_BYTES = 512 * 1024


async def _send_batch(
    topic: Any, record: str, items: list[tuple[str, dict[str, Any]]], partition: int | None
) -> None:
    """One message with ``items`` (halved until each part fits ``MAX_BATCH_BYTES``), keyed by
    its first item, whose key hashes to the partition the batch goes to."""
    body = encode_items(record, [value for _, value in items])
    if len(body) > MAX_BATCH_BYTES and len(items) > 1:
        half = len(items) // 2
        await _send_batch(topic, record, items[:half], partition)
        await _send_batch(topic, record, items[half:], partition)
        return
    await topic.send(key=items[0][0], value=body, partition=partition, value_serializer="raw")


async def send_outcomes(topology: Topology, outcomes: Iterable[Outcome]) -> None:
    outbox = Outbox(topology)
    outbox.add_outcomes(outcomes)
    await outbox.flush()


async def send_request(topology: Topology, request: ActionRequest, *, now: int) -> str:
    """Route a request to its action topic, or to the delay tier its wait needs."""
    name, routed = routing.route(request, now_ms=now, tiers=topology.tiers)
    if routed.tier:
        topic = topology.delays[int(routed.tier.rstrip("s"))]
    else:
        topic = topology.actions[routed.action]
    await topic.send(key=routed.chain_id, value=encode("action_request", routed.to_dict()))
    return name


def reason_for(exc: Exception) -> str:
    """The dead-letter reason for an exception a handler did not expect."""
    return exc.reason if isinstance(exc, Undecodable) else "internal_error"


async def dead_letter(
    topology: Topology, message: Any, reason: str, error: str, *, audit: bool = True
) -> None:
    """Keep a message we cannot use, with the reason, and count it in the audit trail
    (``audit=False`` for outcome rows themselves: auditing them would feed the same sink)."""
    at = now_ms()
    payload = message.value if isinstance(message.value, bytes) else bytes(message.value or b"")
    letter = DeadLetter(
        reason=reason,
        error=error[:2000],
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        at=at,
        payload=payload,
    )
    await topology.dead_letter.send(key=reason, value=encode("dead_letter", letter.to_dict()))
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


async def run_concurrently(topology: Topology, stream: Any, limit: int, handle: Any) -> None:
    """Handle up to ``limit`` events at once; each is acknowledged when its handling ends.

    Faust commits only the contiguous prefix of acknowledged offsets, so an event still in
    flight holds its partition's commit back and a crash redelivers it.
    """
    manual = stream.noack()
    slots = asyncio.Semaphore(limit)
    in_flight: set[asyncio.Task[None]] = set()
    # records of one key (one chain) run one after another, in offset order: two copies of a
    # request arriving together must not both look, find nothing begun, and both act
    turns: dict[Any, tuple[asyncio.Lock, int]] = {}

    async def one(event: Any) -> None:
        key = event.message.key
        lock, waiting = turns.get(key) or (asyncio.Lock(), 0)
        turns[key] = (lock, waiting + 1)
        try:
            async with lock:
                await handle(event)
        except Exception as exc:
            if not isinstance(exc, Undecodable):
                log.exception("handling failed on %s", origin_of(event.message))
            await dead_letter_safely(event.message, exc)
        finally:
            lock, waiting = turns[key]
            if waiting > 1:
                turns[key] = (lock, waiting - 1)
            else:
                del turns[key]
            slots.release()
            await manual.ack(event)

    async def dead_letter_safely(message: Any, exc: Exception) -> None:
        try:
            await dead_letter(topology, message, reason_for(exc), str(exc))
        except Exception:
            log.exception("could not dead-letter %s", origin_of(message))

    try:
        async for event in manual.events():
            await slots.acquire()
            task = asyncio.create_task(one(event))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
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
