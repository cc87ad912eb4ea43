"""Delay tiers: hold each record until it is due without blocking anything else.

Every record in a tier waits the same time, so the head of a partition is always due first.
A record that is not yet due is kept (unacknowledged, so a crash redelivers it) and its
partition alone is paused until the head is due; other partitions and tiers keep flowing.
Held records are acknowledged only after they were forwarded, so offsets never pass a record
that has not fired.

Faust drops the records of a partition that was fetched but paused mid-batch, so on resume
the partition is sought back to just after the last record this agent saw (Spring Kafka does
the same); a record seen twice because of that is ignored.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from faust.types import TP

from agents.common import dead_letter, log, now_ms, origin_of, send_request
from streams.app import Topology
from streams.policy import backoff
from streams.policy.model import ActionRequest


class TierHolds:
    """Per topic-partition queues of records waiting for their hop to end."""

    def __init__(self, topology: Topology, stream: Any) -> None:
        self.topology = topology
        self.stream = stream
        self.consumer = topology.app.consumer
        self.waiting: dict[Any, deque[Any]] = {}
        self.seen: dict[Any, int] = {}  # last offset offered per partition
        self.timers: dict[Any, asyncio.TimerHandle] = {}
        self.generation = 0  # bumped on rebalance: held records of revoked partitions are dropped

    async def offer(self, event: Any) -> None:
        # Faust's consumer pauses and resumes its own TP type, not aiokafka's
        tp = TP(event.message.tp.topic, event.message.tp.partition)
        offset = event.message.offset
        if offset <= self.seen.get(tp, -1):
            return  # redelivered after a seek back: the first copy is held or was forwarded
        self.seen[tp] = offset
        queue = self.waiting.get(tp)
        if queue:  # someone is already waiting here: keep offset order
            queue.append(event)
            return
        if self._hold_ms(event) <= 0:
            await self._forward(event)
            return
        self.waiting[tp] = deque([event])
        self.consumer.pause_partitions({tp})
        self._arm(tp)

    def forget(self) -> None:
        """Drop every held record unacknowledged: after a rebalance its new owner redelivers it."""
        self.generation += 1
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        tps = list(self.waiting)
        self.waiting.clear()
        self.seen.clear()
        if tps:
            self.consumer.resume_partitions(set(tps))

    def _hold_ms(self, event: Any) -> int:
        return backoff.hold_ms(event.value["hop_due_at"], now_ms())

    def _arm(self, tp: Any) -> None:
        head = self.waiting[tp][0]
        delay_s = self._hold_ms(head) / 1000
        generation = self.generation
        loop = asyncio.get_running_loop()
        self.timers[tp] = loop.call_later(
            delay_s, lambda: loop.create_task(self._release(tp, generation))
        )

    async def _release(self, tp: Any, generation: int) -> None:
        if generation != self.generation:
            return
        self.timers.pop(tp, None)
        queue = self.waiting.get(tp)
        while queue and self._hold_ms(queue[0]) <= 0:
            await self._forward(queue.popleft())
            if generation != self.generation:
                return
        if queue:
            self._arm(tp)
        else:
            self.waiting.pop(tp, None)
            await self.consumer.seek(tp, self.seen[tp] + 1)
            self.consumer.resume_partitions({tp})

    async def _forward(self, event: Any) -> None:
        try:
            request = ActionRequest.from_dict(event.value)
            await send_request(self.topology, request, now=now_ms())
        except Exception as exc:
            log.exception("delay forward failed on %s", origin_of(event.message))
            await dead_letter(self.topology, event.message, "internal_error", repr(exc))
        await self.stream.ack(event)


def register(topology: Topology) -> None:
    app = topology.app
    if not topology.delays:
        return
    names = [topic.get_topic_name() for topic in topology.delays.values()]
    tiers_topic = app.topic(*names, key_serializer="raw", value_serializer="avro-action_request")
    holds: list[TierHolds] = []

    @app.agent(tiers_topic, name="delay")
    async def delay(stream: Any) -> None:
        manual = stream.noack()
        tier_holds = TierHolds(topology, manual)
        holds.append(tier_holds)
        async for event in manual.events():
            await tier_holds.offer(event)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        for tier_holds in holds:
            tier_holds.forget()
