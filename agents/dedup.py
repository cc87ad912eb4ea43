"""Dedup: act once per failing run, and pass new facts on to their chain.

The table is keyed by the dedup key, the same key the classified topic is partitioned by,
so one partition owns a run and its alerts are handled one at a time (a per-key mutex for
free). The forward is sent before the table is written: a crash repeats a forward, which the
chain absorbs, instead of losing one.
"""

from __future__ import annotations

from typing import Any

from agents.common import dead_letter, log, now_ms, origin_of, send_chain_event, send_outcomes
from streams.app import Topology
from streams.policy.dedup import DedupEntry, Verdict, decide, dedup_key, outcome_for
from streams.policy.model import ChainEvent, ChainEventKind, ClassifiedAlert

_FORWARD = {Verdict.NEW_FAILURE: ChainEventKind.FAILURE, Verdict.SUCCESS: ChainEventKind.SUCCESS}


def register(topology: Topology) -> None:
    app = topology.app
    table = topology.dedup
    horizon_ms = topology.settings.dedup_horizon_s * 1000

    @app.agent(topology.classified, name="dedup")
    async def dedup(stream: Any) -> None:
        async for event in stream.events():
            try:
                await _dedup_one(
                    topology, table, ClassifiedAlert.from_dict(event.value), horizon_ms
                )
            except Exception as exc:
                log.exception("dedup failed on %s", origin_of(event.message))
                await dead_letter(topology, event.message, "internal_error", repr(exc))


async def _dedup_one(
    topology: Topology, table: Any, record: ClassifiedAlert, horizon_ms: int
) -> None:
    now = now_ms()
    key = dedup_key(record.alert)
    stored = table.get(key)
    decision = decide(
        DedupEntry.from_dict(stored) if stored else None,
        record.alert,
        now_ms=now,
        horizon_ms=horizon_ms,
    )
    kind = _FORWARD.get(decision.verdict)
    if kind is not None:
        await send_chain_event(
            topology,
            ChainEvent(
                kind=kind.value,
                chain_id=decision.chain_id,
                dedup_key=key,
                at=now,
                alert=record.alert,
                classification=record.classification,
                origin=record.origin,
                received_at=record.received_at,
            ),
        )
    row = outcome_for(decision, record, key, now_ms=now)
    if row is not None:
        await send_outcomes(topology, (row,))
    table[key] = decision.entry.to_dict()
