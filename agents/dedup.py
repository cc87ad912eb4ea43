"""Dedup: act once per failing run, and pass new facts on to their chain.

The table is keyed by the dedup key, the same key the classified topic is partitioned by
(a batch on ``alerts-classified`` holds only keys of its partition), so one partition owns a
run and its alerts are handled one at a time (a per-key mutex for free). A batch is decided
item by item against what the table holds plus what the batch already changed; its chain
events and audit rows are sent first and the table is written after, once per key: a crash
repeats a forward, which the chain absorbs, instead of losing one.
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
from streams.policy.dedup import DedupEntry, Verdict, decide, dedup_key, outcome_for
from streams.policy.model import ChainEvent, ChainEventKind, ClassifiedAlert

_FORWARD = {Verdict.NEW_FAILURE: ChainEventKind.FAILURE, Verdict.SUCCESS: ChainEventKind.SUCCESS}


def register(topology: Topology) -> None:
    horizon_ms = topology.settings.dedup_horizon_s * 1000
    expiry = TableExpiry(topology.dedup, topology.settings.partitions, lambda v: v["expires_at"])

    @topology.app.agent(topology.classified, name="dedup", **CRASH_WORKER)
    async def dedup(stream: Any) -> None:
        async for event in stream.events():
            try:
                items = decode_items("classified_alert", event.value)
                records = [ClassifiedAlert.from_dict(item) for item in items]
                await _dedup_batch(topology, expiry, event.message.partition, records, horizon_ms)
            except Exception as exc:
                await dead_letter_failure(topology, event.message, exc)


async def _dedup_batch(
    topology: Topology,
    expiry: TableExpiry,
    partition: int,
    records: list[ClassifiedAlert],
    horizon_ms: int,
) -> None:
    now = now_ms()
    table = expiry.table
    expiry.sweep(partition, now)
    outbox = Outbox(topology)
    stored: dict[str, DedupEntry | None] = {}  # as the table holds it before this batch
    changed: dict[str, DedupEntry] = {}
    for record in records:
        key = dedup_key(record.alert)
        if key not in stored:
            value = table.get(key)
            stored[key] = DedupEntry.from_dict(value) if value else None
        before = changed.get(key) or stored[key]
        decision = decide(before, record.alert, now_ms=now, horizon_ms=horizon_ms)
        kind = _FORWARD.get(decision.verdict)
        if kind is not None:
            outbox.add_chain_event(
                ChainEvent(
                    kind=kind.value,
                    chain_id=decision.chain_id,
                    dedup_key=key,
                    at=now,
                    alert=record.alert,
                    classification=record.classification,
                    origin=record.origin,
                    received_at=record.received_at,
                )
            )
        row = outcome_for(decision, record, key, now_ms=now)
        if row is not None:
            outbox.add_outcomes((row,))
        if decision.entry != before:
            changed[key] = decision.entry
    await outbox.flush()
    for key, entry in changed.items():
        table[key] = value = entry.to_dict()
        before = stored[key]
        if before is None or before.expires_at != entry.expires_at:
            expiry.remember(partition, key, value)
