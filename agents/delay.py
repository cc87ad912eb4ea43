"""Delay tiers: hold each record until it is due without blocking anything else.

Every record in a tier waits the same time, so the head of a partition is always due first.
A tier message is a batch of the requests one step routed there together; it is due when
its last item's hop ends (at most the sender's linger after its first). A message that is not
yet due is held in memory, unacknowledged (a crash or a rebalance redelivers it from the last
commit), together with every later message of its partition: that partition is logically
paused until its head is due, while other partitions and tiers keep flowing. Held messages
are acknowledged only after their items were forwarded, so committed offsets never pass a
record that has not fired.

The consumer itself is never paused. Faust drops records of a partition paused in the middle
of a fetched batch, and seeking back to recover them makes its gap bookkeeping skip records
for good (measured with bench/delay_lateness.py); holding in memory has neither problem, and a
release needs no new fetch, so records fire on their timer. Memory is bounded by
``max_held``: above it the agent stops taking messages until some are released, which delays
intake but never drops anything.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from agents import metrics
from agents.common import CRASH_WORKER, dead_letter_failure
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
    """Per topic-partition FIFOs of tier messages waiting for their hop to end."""

    def __init__(self, topology: Topology, stream: Any, *, max_held: int = MAX_HELD) -> None:
        self.topology = topology
        self.stream = stream
        self.max_held = max_held
        self.waiting: dict[tuple[str, int], deque[Held]] = {}
        self.timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()
        self.generation = 0  # bumped on rebalance: held records of revoked partitions are dropped

    async def offer(self, event: Any, items: list[dict[str, Any]]) -> None:
        """Hold ``event`` (its decoded request ``items``) until its hop ends, then forward."""
        held = Held(event, items)
        tp = (event.message.topic, event.message.partition)
        queue = self.waiting.get(tp)
        if queue is not None:  # this partition is held or being released: keep offset order
            await self._hold(tp, queue, held)
        elif self._hold_ms(held) <= 0:
            await self._forward([held])
        else:
            queue = self.waiting[tp] = deque()
            await self._hold(tp, queue, held)
            self._arm(tp)

    def forget(self) -> None:
        """Drop every held record unacknowledged: after a rebalance its owner redelivers it."""
        self.generation += 1
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        self.waiting.clear()
        self.held = 0
        self.room.set()

    async def _hold(self, tp: tuple[str, int], queue: deque[Held], held: Held) -> None:
        queue.append(held)
        self.held += 1
        if self.held >= self.max_held:
            self.room.clear()
            await self.room.wait()  # backpressure: take nothing more until records fire

    def _hold_ms(self, held: Held) -> int:
        return backoff.hold_ms(held.due_at, self.topology.clock.now_ms())

    def _arm(self, tp: tuple[str, int]) -> None:
        head = self.waiting[tp][0]
        generation = self.generation
        loop = asyncio.get_running_loop()
        self.timers[tp] = self.topology.clock.call_later(
            self._hold_ms(head) / 1000, lambda: loop.create_task(self._release(tp, generation))
        )

    async def _release(self, tp: tuple[str, int], generation: int) -> None:
        if generation != self.generation:
            return
        self.timers.pop(tp, None)
        queue = self.waiting.get(tp)
        due: list[Held] = []
        while queue and self._hold_ms(queue[0]) <= 0:
            due.append(queue.popleft())
        self.held -= len(due)
        # Messages offered while this send is under way join the same queue (an empty queue
        # still marks the partition as held), so they are armed for below, not dropped.
        await self._forward(due)  # every message due now, in one send
        if generation != self.generation or queue is None:
            return
        if self.held < self.max_held:
            self.room.set()
        if queue:
            self._arm(tp)
        else:
            del self.waiting[tp]

    async def _forward(self, due: list[Held]) -> None:
        """Send the items of ``due`` on (to their action topic or their next tier), then
        acknowledge the messages. A message with an item that is not a request is also
        dead-lettered; its other items still go."""
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
            await self.stream.ack(held.event)


def register(topology: Topology) -> None:
    app = topology.app
    if not topology.delays:
        return
    names = [topic.get_topic_name() for topic in topology.delays.values()]
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
                await dead_letter_failure(topology, event.message, exc)
                await manual.ack(event)
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
