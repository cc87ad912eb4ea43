"""Dedup: act once per failing run, and pass new facts on to their chain.

The table is keyed by the dedup key, the same key the classified topic is partitioned by,
so one partition owns a run and its alerts are handled one at a time (a per-key mutex for
free). The forward is sent before the table is written: a crash repeats a forward, which the
chain absorbs, instead of losing one.
"""

from __future__ import annotations

from typing import Any

from agents.common import (
    TableExpiry,
    dead_letter,
    log,
    now_ms,
    origin_of,
    send_chain_event,
    send_outcomes,
)
from streams.app import Topology
from streams.policy.dedup import DedupEntry, Verdict, decide, dedup_key, outcome_for
from streams.policy.model import ChainEvent, ChainEventKind, ClassifiedAlert

_FORWARD = {Verdict.NEW_FAILURE: ChainEventKind.FAILURE, Verdict.SUCCESS: ChainEventKind.SUCCESS}


def register(topology: Topology) -> None:
    horizon_ms = topology.settings.dedup_horizon_s * 1000
    expiry = TableExpiry(topology.dedup, topology.settings.partitions, lambda v: v["expires_at"])

    @topology.app.agent(topology.classified, name="dedup")
    async def dedup(stream: Any) -> None:
        async for event in stream.events():
            try:
                record = ClassifiedAlert.from_dict(event.value)
                await _dedup_one(topology, expiry, event.message.partition, record, horizon_ms)
            except Exception as exc:
                log.exception("dedup failed on %s", origin_of(event.message))
                await dead_letter(topology, event.message, "internal_error", repr(exc))


async def _dedup_one(
    topology: Topology,
    expiry: TableExpiry,
    partition: int,
    record: ClassifiedAlert,
    horizon_ms: int,
) -> None:
    now = now_ms()
    table = expiry.table
    expiry.sweep(partition, now)
    key = dedup_key(record.alert)
    stored = table.get(key)
    before = DedupEntry.from_dict(stored) if stored else None
    decision = decide(before, record.alert, now_ms=now, horizon_ms=horizon_ms)
    kind = _FORWARD.get(decision.verdict)
    if kind is not None:
        event = ChainEvent(
            kind=kind.value,
            chain_id=decision.chain_id,
            dedup_key=key,
            at=now,
            alert=record.alert,
            classification=record.classification,
            origin=record.origin,
            received_at=record.received_at,
        )
        await send_chain_event(topology, event)
    row = outcome_for(decision, record, key, now_ms=now)
    if row is not None:
        await send_outcomes(topology, (row,))
    if decision.entry != before:
        table[key] = decision.entry.to_dict()
        if before is None or before.expires_at != decision.entry.expires_at:
            expiry.remember(partition, key, table[key])
