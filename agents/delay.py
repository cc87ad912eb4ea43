"""Delay tiers: hold each record until it is due without blocking anything else.

A tier message is a batch of the requests one step routed there together; it is due when
its last item's hop ends (at most the sender's linger after its first). A message that is not
yet due is held in memory, unacknowledged (a crash or a rebalance redelivers it from the last
commit). Each partition's held messages wait in order of due time and each goes on when *it*
is due, so one topic can carry several tiers (the compact topic profile folds them all into
``delays``), while other partitions and tiers keep flowing. Messages are acknowledged in
offset order once forwarded (:class:`agents.common.InOrderAcks`), so committed offsets never
pass a record that has not fired; on a topic of one tier, due order is offset order.

The consumer itself is never paused. Faust drops records of a partition paused in the middle
of a fetched batch, and seeking back to recover them makes its gap bookkeeping skip records
for good (measured with bench/delay_lateness.py); holding in memory has neither problem, and a
release needs no new fetch, so records fire on their timer. Memory is bounded by
``max_held``: above it the agent stops taking messages until some are released, which delays
intake but never drops anything.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

from agents import metrics
from agents.common import CRASH_WORKER, InOrderAcks, dead_letter_failure
from agents.outbox import Outbox
from streams.app import Topology
from streams.codecs import Undecodable, decode_items
from streams.policy import backoff
from streams.policy.model import ActionRequest

MAX_HELD = 100_000  # messages held per worker before intake waits


class Held:
    """One tier message: its event, its decoded items and when the last of them is due."""

    __slots__ = ("event", "items", "due_at")

    def __init__(self, event: Any, items: list[dict[str, Any]]) -> None:
        self.event = event
        self.items = items
        self.due_at = max((item["hop_due_at"] for item in items), default=0)


class TierHolds:
    """Per topic-partition heaps of tier messages waiting for their hop to end."""

    def __init__(self, topology: Topology, stream: Any, *, max_held: int = MAX_HELD) -> None:
        self.topology = topology
        self.stream = stream
        self.acks = InOrderAcks(stream)
        self.max_held = max_held
        # (due_at, arrival, Held): the earliest due first, offset order among equals
        self.waiting: dict[tuple[str, int], list[tuple[int, int, Held]]] = {}
        self.timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self.arrivals = itertools.count()
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()
        self.generation = 0  # bumped on rebalance: held records of revoked partitions are dropped

    async def offer(self, event: Any, items: list[dict[str, Any]]) -> None:
        """Hold ``event`` (its decoded request ``items``) until its hop ends, then forward."""
        self.acks.take(event)
        held = Held(event, items)
        tp = (event.message.topic, event.message.partition)
        if self._hold_ms(held) <= 0:
            await self._forward([held])
            return
        heap = self.waiting.setdefault(tp, [])
        earliest = not heap or held.due_at < heap[0][0]
        heapq.heappush(heap, (held.due_at, next(self.arrivals), held))
        self.held += 1
        if earliest:
            self._arm(tp)
        if self.held >= self.max_held:
            self.room.clear()
            await self.room.wait()  # backpressure: take nothing more until records fire

    async def take_undecodable(self, event: Any, exc: Exception) -> None:
        """A message that is not a tier batch: dead-lettered, acknowledged in its turn."""
        self.acks.take(event)
        await dead_letter_failure(self.topology, event.message, exc)
        await self.acks.done(event)

    def forget(self) -> None:
        """Drop every held record unacknowledged: after a rebalance its owner redelivers it."""
        self.generation += 1
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        self.waiting.clear()
        self.acks.forget()
        self.held = 0
        self.room.set()

    def _hold_ms(self, held: Held) -> int:
        return backoff.hold_ms(held.due_at, self.topology.clock.now_ms())

    def _arm(self, tp: tuple[str, int]) -> None:
        """(Re)set ``tp``'s timer for its earliest held message."""
        previous = self.timers.pop(tp, None)
        if previous is not None:
            previous.cancel()
        head = self.waiting[tp][0][2]
        generation = self.generation
        loop = asyncio.get_running_loop()
        self.timers[tp] = self.topology.clock.call_later(
            self._hold_ms(head) / 1000, lambda: loop.create_task(self._release(tp, generation))
        )

    async def _release(self, tp: tuple[str, int], generation: int) -> None:
        if generation != self.generation:
            return
        self.timers.pop(tp, None)
        heap = self.waiting.get(tp, [])
        due: list[Held] = []
        while heap and self._hold_ms(heap[0][2]) <= 0:
            due.append(heapq.heappop(heap)[2])
        self.held -= len(due)
        if heap:
            self._arm(tp)
        else:
            self.waiting.pop(tp, None)
        if self.held < self.max_held:
            self.room.set()
        await self._forward(due)  # every message due now, in one send

    async def _forward(self, due: list[Held]) -> None:
        """Send the items of ``due`` on (to their action topic or their next tier), then
        acknowledge the messages. A message with an item that is not a request is also
        dead-lettered; its other items still go."""
        if not due:
            return
        outbox = Outbox(self.topology)
        now = self.topology.clock.now_ms()
        bad: dict[int, tuple[Held, Exception]] = {}  # one dead letter per message, at most
        for held in due:
            for item in held.items:
                try:
                    outbox.add_request(ActionRequest.from_dict(item), now=now)
                except Exception as exc:
                    bad.setdefault(id(held), (held, exc))
        try:
            await outbox.flush()
        except Exception as exc:
            bad = {id(held): (held, exc) for held in due}
        for held, exc in bad.values():
            await dead_letter_failure(self.topology, held.event.message, exc)
        for held in due:
            await self.acks.done(held.event)


def register(topology: Topology) -> None:
    app = topology.app
    if not topology.delays:
        return
    # in the compact profile every tier is one topic
    names = list(dict.fromkeys(topic.get_topic_name() for topic in topology.delays.values()))
    tiers_topic = app.topic(*names, key_serializer="raw", value_serializer="raw")
    holds: list[TierHolds] = []
    metrics.LIVE.add(
        "pipemedic_delay_held",
        "Records held in the delay tiers until their hop ends, by tier topic",
        ("topic",),
        lambda: held_by_topic(holds),
    )

    @app.agent(tiers_topic, name="delay", **CRASH_WORKER)
    async def delay(stream: Any) -> None:
        manual = stream.noack()
        tier_holds = TierHolds(topology, manual)
        holds.append(tier_holds)
        async for event in manual.events():
            try:
                items = decode_items("action_request", event.value)
            except Undecodable as exc:
                await tier_holds.take_undecodable(event, exc)
                continue
            await tier_holds.offer(event, items)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        for tier_holds in holds:
            tier_holds.forget()


def held_by_topic(holds: list[TierHolds]) -> dict[tuple[str, ...], float]:
    held: dict[tuple[str, ...], float] = {}
    for tier_holds in holds:
        for (topic, _partition), queue in tier_holds.waiting.items():
            held[(topic,)] = held.get((topic,), 0.0) + len(queue)
    return held
