"""The outbox: what a step sends, gathered into one batch message per topic partition.

The busy internal topics (classified alerts, chain events, outcomes) carry batches, so each
stage pays the framework's per-message cost once per batch. Every key in a batch hashes to
the partition the batch goes to, so tables stay co-partitioned with the topics that feed them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from faust.exceptions import ProducerSendError

from agents import metrics
from streams.app import Topology
from streams.codecs import encode, encode_items
from streams.policy import backoff, routing
from streams.policy.admission import ADMISSION_KEY, goes_to_admission_now
from streams.policy.dedup import dedup_key
from streams.policy.model import ActionRequest, ChainEvent, ClassifiedAlert, Outcome
from streams.policy.steps import Effects

log = logging.getLogger("pipemedic")


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
    messages too. Requests are routed when added: those due go to their action topic one
    message each (executors act on them one by one), notices due go to the notifier's topic
    in one batch per partition, those that must wait go to their delay tier in one batch per
    tier partition. ``flush`` returns once the broker has acknowledged
    everything, the next steps before the outcome rows; callers write their tables only after
    it. A send the producer gives up on (broker unreachable past its own retries) is tried
    again after ``retry_delays_s``; what the broker acknowledged is not sent again.
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
        self.due: list[ActionRequest] = []  # routed to their action topics
        # notices due now: one batch per partition of the notifier's topic (in observe mode
        # every failure is one; the notifier handles a batch's chains side by side)
        self.notices: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        # new actions pass admission first (caps, budget, storms), when the worker has it
        self.admits = getattr(topology, "admission", None) is not None
        self.admission: list[tuple[str, dict[str, Any]]] = []
        self.waiting: dict[
            tuple[int, int], list[tuple[str, dict[str, Any]]]
        ] = {}  # tier, partition

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
        """Route ``request`` as of ``now``: to admission if it is a new action (or a held one
        due for another look), else to its action topic, or to the tier its wait needs."""
        if self.admits and goes_to_admission_now(request, now):
            self.admission.append((ADMISSION_KEY, request.to_dict()))
            return
        _, routed = routing.route(request, now_ms=now, tiers=self.topology.tiers)
        if not routed.tier and routed.action == routing.NOTIFY:
            key = routed.chain_id
            partition = partition_for(key, self.partitions)
            self.notices.setdefault(partition, []).append((key, routed.to_dict()))
            return
        if not routed.tier:
            self.due.append(routed)
            return
        key = routed.chain_id
        place = (backoff.tier_seconds(routed.tier), partition_for(key, self.partitions))
        self.waiting.setdefault(place, []).append((key, routed.to_dict()))

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
                await self.topology.clock.sleep(delay_s)

    async def _send_pending(self) -> None:
        """Send what carries the next steps, wait until the broker has every one of them,
        and only then the outcome rows that say those steps happened: a crash in between
        may lose a claim (the input is read again from its last commit), never a step."""
        topology = self.topology
        sends: list[tuple[Awaitable[Any], Callable[[], None]]] = []
        try:
            for batches, topic, record, lane in (
                (self.classified, topology.classified, "classified_alert", routing.CLASSIFIED),
                (self.chain_events, topology.chain_events, "chain_event", routing.CHAIN_EVENTS),
                (self.notices, topology.notify, "action_request", routing.NOTIFICATIONS),
            ):
                headers = topology.headers_for(lane)
                for partition, items in batches.items():
                    sent = await _send_batch(topic, record, items, partition, headers)
                    sends.append((sent, partial(batches.pop, partition)))
            for place, items in self.waiting.items():
                tier_s, partition = place
                topic = topology.delays[tier_s]
                sent = await _send_batch(topic, "action_request", items, partition)
                sends.append((sent, partial(self.waiting.pop, place)))
            if self.admission:
                partition = partition_for(ADMISSION_KEY, self.partitions)
                items = self.admission
                sent = await _send_batch(
                    topology.admission,
                    "action_request",
                    items,
                    partition,
                    topology.headers_for(routing.ADMISSION),
                )
                sends.append((sent, items.clear))
            for request in self.due:
                sent = await topology.actions[request.action].send(
                    key=request.chain_id,
                    value=encode("action_request", request.to_dict()),
                    headers=topology.headers_for(routing.action_topic(request.action)),
                )
                sends.append((sent, partial(self.due.remove, request)))
        finally:  # what the producer took is waited for, even when a later send failed
            await _delivered(sends)
        if self.outcomes:  # the sink keeps no state: any partition will do
            sent = await _send_batch(topology.outcomes, "outcome", self.outcomes, None)
            states = [row["state"] for _, row in self.outcomes]
            await _delivered([(sent, self.outcomes.clear)])
            for state in states:
                metrics.OUTCOME_ROWS.labels(state).inc()


async def _delivered(sends: list[tuple[Awaitable[Any], Callable[[], None]]]) -> None:
    """Wait for the broker's acknowledgement of every send; each one acknowledged is done
    (``forget`` drops it from the outbox), the first failure is raised once all have ended,
    so a retry sends again only what the broker did not take."""
    results = await asyncio.gather(*(sent for sent, _ in sends), return_exceptions=True)
    failure = None
    for (_, forget), result in zip(sends, results, strict=True):
        if isinstance(result, BaseException):
            failure = failure or result
        else:
            forget()
    if failure is not None:
        raise failure


class SharedOutbox:
    """One :class:`Outbox` for many concurrent steps: what steps finish within ``linger_s``
    of each other is sent together, so the stages downstream get a few full batches
    instead of one small message per step. ``send`` returns once the broker has acknowledged
    the effects; the caller acknowledges its record only then.
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
        await self.topology.clock.sleep(self.linger_s)
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
    topic: Any,
    record: str,
    items: list[tuple[str, dict[str, Any]]],
    partition: int | None,
    headers: list[tuple[str, bytes]] | None = None,
) -> Awaitable[Any]:
    """Hand ``items`` to the producer as one message (halved until each part fits
    ``MAX_BATCH_BYTES``), keyed by its first item, whose key hashes to the partition the batch
    goes to. Returns what completes once the broker has every part."""
    body = encode_items(record, [value for _, value in items])
    if len(body) > MAX_BATCH_BYTES and len(items) > 1:
        half = len(items) // 2
        first = await _send_batch(topic, record, items[:half], partition, headers)
        second = await _send_batch(topic, record, items[half:], partition, headers)
        return asyncio.gather(first, second)
    return await topic.send(
        key=items[0][0], value=body, partition=partition, value_serializer="raw", headers=headers
    )


async def send_outcomes(topology: Topology, outcomes: Iterable[Outcome]) -> None:
    outbox = Outbox(topology)
    outbox.add_outcomes(outcomes)
    await outbox.flush()
