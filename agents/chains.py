"""Chains: count attempts across reruns and schedule the next action, or give up.

Keyed by chain id on ``chain-events``; the decision is :func:`streams.policy.chains.on_event`.
"""

from __future__ import annotations

from typing import Any

from agents.common import (
    TableExpiry,
    dead_letter,
    log,
    now_ms,
    origin_of,
    send_outcomes,
    send_request,
)
from streams.app import Topology
from streams.policy.chains import Chain, ChainPolicy, on_event
from streams.policy.model import ChainEvent


def register(topology: Topology) -> None:
    app = topology.app
    table = topology.chains
    settings = topology.settings
    policy = ChainPolicy(
        mode=settings.mode,
        max_retries_cap=settings.max_retries_cap,
        horizon_ms=settings.dedup_horizon_s * 1000,
    )

    # final chains carry their expiry; any other is dropped a horizon after its last change
    expiry = TableExpiry(
        table,
        settings.partitions,
        lambda v: v.get("expires_at") or v.get("updated_at", 0) + policy.horizon_ms,
    )

    @app.agent(topology.chain_events, name="chains")
    async def chains(stream: Any) -> None:
        async for event in stream.events():
            try:
                chain_event = ChainEvent.from_dict(event.value)
                await _advance(topology, expiry, event.message.partition, chain_event, policy)
            except Exception as exc:
                log.exception("chain step failed on %s", origin_of(event.message))
                await dead_letter(topology, event.message, "internal_error", repr(exc))


async def _advance(
    topology: Topology, expiry: TableExpiry, partition: int, event: ChainEvent, policy: ChainPolicy
) -> None:
    now = now_ms()
    table = expiry.table
    expiry.sweep(partition, now)
    stored = table.get(event.chain_id)
    step = on_event(Chain.from_dict(stored) if stored else None, event, now_ms=now, policy=policy)
    if step.schedule is not None:
        await send_request(topology, step.schedule, now=now)
    await send_outcomes(topology, step.outcomes)
    if step.chain is not None:
        table[event.chain_id] = step.chain.to_dict()
        expiry.remember(partition, event.chain_id, table[event.chain_id])
