"""Chains: count attempts across reruns and schedule the next action, or give up.

Keyed by chain id on ``chain-events`` (a batch there holds only chain ids of its partition);
the decision is :func:`streams.policy.chains.on_event`. The dedup stage moves the chains of
its own partition itself (:meth:`Chains.step`, :meth:`Chains.write`), so a new failure whose
chain shares its run's partition costs one stateful hop; the two stages take turns on a
partition (:meth:`Chains.turn`), so a chain is never read by one while the other writes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import metrics
from agents.common import CRASH_WORKER, TableExpiry, each_batch
from agents.outbox import Outbox
from streams.app import Topology
from streams.policy import routing
from streams.policy.chains import Chain, ChainPolicy, on_event
from streams.policy.model import ChainEvent, ChainState
from streams.policy.notices import notices_for
from streams.policy.rollout import Rollout

WAITING = ChainState.AWAITING_APPROVAL.value


class Chains:
    """Moves chains by the batches of ``chain-events``, kept in ``table`` (the Faust table;
    any mapping in tests), at the time of ``topology.clock``."""

    def __init__(self, topology: Topology, table: Any, policy: ChainPolicy) -> None:
        self.topology = topology
        self.policy = policy
        # final chains carry their expiry; any other is dropped a horizon after its last change
        self.expiry = TableExpiry(
            table,
            topology.settings.partitions,
            lambda v: v.get("expires_at") or v.get("updated_at", 0) + policy.horizon_ms,
        )

        self.turns: dict[int, asyncio.Lock] = {}

    def turn(self, partition: int) -> asyncio.Lock:
        """Held while a batch of ``partition`` reads, steps and writes its chains."""
        return self.turns.setdefault(partition, asyncio.Lock())

    async def __call__(self, partition: int, events: list[ChainEvent]) -> None:
        """Move each chain by its events in order; effects are sent before the table is
        written, once per chain."""
        async with self.turn(partition):
            now = self.topology.clock.now_ms()
            outbox = Outbox(self.topology)
            changed = self.step(partition, events, outbox, now)
            await outbox.flush()
            self.write(partition, changed)

    def step(
        self, partition: int, events: list[ChainEvent], outbox: Outbox, now: int
    ) -> dict[str, Chain]:
        """Move the chains of ``events`` (all of ``partition``), their effects into
        ``outbox``; returns each changed chain, for :meth:`write` once the outbox is sent.
        Call with :meth:`turn` held."""
        table = self.expiry.table
        self.expiry.sweep(partition, now)
        changed: dict[str, Chain] = {}
        for event in events:
            before = changed.get(event.chain_id)
            if before is None:
                stored = table.get(event.chain_id)
                before = Chain.from_dict(stored) if stored else None
            step = on_event(before, event, now_ms=now, policy=self.policy)
            if step.schedule is not None:
                outbox.add_request(step.schedule, now=now)
            outbox.add_outcomes(step.outcomes)
            # transitions people hear about go to the notifier's own topic
            for notice in notices_for(step.chain, event.alert, event.classification, step.outcomes):
                outbox.add_request(notice, now=now)
            if step.chain is not None:
                changed[event.chain_id] = step.chain
        return changed

    def write(self, partition: int, changed: dict[str, Chain]) -> None:
        table = self.expiry.table
        for chain_id, chain in changed.items():
            table[chain_id] = value = chain.to_dict()
            self.expiry.remember(partition, chain_id, value)


def register(topology: Topology, *, page_hook: bool, rollout: Rollout | None = None) -> Chains:
    """``page_hook``: a ``manual`` playbook is configured (see ``ChainPolicy.page_hook``);
    ``rollout``: the mode by scope (``settings.mode`` where no row matches)."""
    settings = topology.settings
    policy = ChainPolicy(
        mode=settings.mode,
        max_retries_cap=settings.max_retries_cap,
        horizon_ms=settings.dedup_horizon_s * 1000,
        page_hook=page_hook,
        replayed_observe_only=settings.replayed_observe_only,
        rollout=rollout,
    )
    stage = Chains(topology, topology.chains, policy)
    metrics.LIVE.add(
        "pipemedic_approvals_waiting",
        "Chains on this worker's partitions waiting for a person's approval",
        (),
        lambda: {(): sum(1 for v in topology.chains.values() if v and v.get("state") == WAITING)},
    )

    @topology.app.agent(topology.chain_events, name="chains", **CRASH_WORKER)
    async def chains(stream: Any) -> None:
        await each_batch(
            topology, stream, "chain_event", ChainEvent.from_dict, stage, lane=routing.CHAIN_EVENTS
        )

    return stage
