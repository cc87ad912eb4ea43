"""Chains: count attempts across reruns and schedule the next action, or give up.

Keyed by chain id on ``chain-events`` (a batch there holds only chain ids of its partition);
the decision is :func:`streams.policy.chains.on_event`.
"""

from __future__ import annotations

from typing import Any

from agents.common import (
    CRASH_WORKER,
    TableExpiry,
    dead_letter_failure,
    now_ms,
)
from agents.outbox import Outbox
from streams.app import Topology
from streams.codecs import decode_items
from streams.policy.chains import Chain, ChainPolicy, on_event
from streams.policy.model import ChainEvent


def register(topology: Topology, *, page_hook: bool) -> None:
    """``page_hook``: a ``manual`` playbook is configured (see ``ChainPolicy.page_hook``)."""
    app = topology.app
    table = topology.chains
    settings = topology.settings
    policy = ChainPolicy(
        mode=settings.mode,
        max_retries_cap=settings.max_retries_cap,
        horizon_ms=settings.dedup_horizon_s * 1000,
        page_hook=page_hook,
    )

    # final chains carry their expiry; any other is dropped a horizon after its last change
    expiry = TableExpiry(
        table,
        settings.partitions,
        lambda v: v.get("expires_at") or v.get("updated_at", 0) + policy.horizon_ms,
    )

    @app.agent(topology.chain_events, name="chains", **CRASH_WORKER)
    async def chains(stream: Any) -> None:
        async for event in stream.events():
            try:
                items = decode_items("chain_event", event.value)
                batch = [ChainEvent.from_dict(item) for item in items]
                await _advance(topology, expiry, event.message.partition, batch, policy)
            except Exception as exc:
                await dead_letter_failure(topology, event.message, exc)


async def _advance(
    topology: Topology,
    expiry: TableExpiry,
    partition: int,
    events: list[ChainEvent],
    policy: ChainPolicy,
) -> None:
    """Move each chain by its events in order; effects are sent before the table is written,
    once per chain."""
    now = now_ms()
    table = expiry.table
    expiry.sweep(partition, now)
    outbox = Outbox(topology)
    changed: dict[str, Chain] = {}
    for event in events:
        before = changed.get(event.chain_id)
        if before is None:
            stored = table.get(event.chain_id)
            before = Chain.from_dict(stored) if stored else None
        step = on_event(before, event, now_ms=now, policy=policy)
        if step.schedule is not None:
            outbox.add_request(step.schedule, now=now)
        outbox.add_outcomes(step.outcomes)
        if step.chain is not None:
            changed[event.chain_id] = step.chain
    await outbox.flush()
    for chain_id, chain in changed.items():
        table[chain_id] = value = chain.to_dict()
        expiry.remember(partition, chain_id, value)
