"""Dedup: act once per failing run, and pass new facts on to their chain.

The table is keyed by the dedup key, the same key the classified topic is partitioned by
(a batch on ``alerts-classified`` holds only keys of its partition), so one partition owns a
run and its alerts are handled one at a time (a per-key mutex for free). A batch is decided
item by item against what the table holds plus what the batch already changed; its chain
events and audit rows are sent first and the table is written after, once per key: a crash
repeats a forward, which the chain absorbs, instead of losing one.

One stateful hop: a fact whose chain lives in this very partition (a run's first failure: its
chain id is its dedup key, as for every ADF pipeline run) moves the chain here, through the
chains stage's own :meth:`~agents.chains.Chains.step`, instead of a round trip over
``chain-events``; the chain is written after the send, with the dedup entry. Facts of a chain
kept elsewhere (a rerun of a chain, a Databricks task of a job run) still travel as chain
events, to the partition that owns the chain.
"""

from __future__ import annotations

from typing import Any

from agents.chains import Chains
from agents.common import CRASH_WORKER, TableExpiry, each_batch
from agents.outbox import Outbox, partition_for
from streams.app import Topology
from streams.policy import routing
from streams.policy.dedup import DedupEntry, Verdict, decide, dedup_key, outcome_for
from streams.policy.model import ChainEvent, ChainEventKind, ClassifiedAlert

_FORWARD = {Verdict.NEW_FAILURE: ChainEventKind.FAILURE, Verdict.SUCCESS: ChainEventKind.SUCCESS}


class Dedup:
    """Decides the batches of ``alerts-classified`` against ``table`` (the Faust table; any
    mapping in tests), at the time of ``topology.clock``."""

    def __init__(
        self, topology: Topology, table: Any, *, horizon_ms: int, chains: Chains | None = None
    ) -> None:
        """``chains``: the chains stage, to move the chains of this partition here (without
        it every fact travels as a chain event)."""
        self.topology = topology
        self.horizon_ms = horizon_ms
        self.chains = chains
        self.partitions = topology.settings.partitions
        self.expiry = TableExpiry(table, self.partitions, lambda v: v["expires_at"])

    async def __call__(self, partition: int, records: list[ClassifiedAlert]) -> None:
        if self.chains is None:
            await self._decide(partition, records)
            return
        async with self.chains.turn(partition):
            await self._decide(partition, records)

    async def _decide(self, partition: int, records: list[ClassifiedAlert]) -> None:
        now = self.topology.clock.now_ms()
        table = self.expiry.table
        self.expiry.sweep(partition, now)
        outbox = Outbox(self.topology)
        stored: dict[str, DedupEntry | None] = {}  # as the table holds it before this batch
        changed: dict[str, DedupEntry] = {}
        here: list[ChainEvent] = []  # facts of chains this partition owns, in order
        for record in records:
            key = dedup_key(record.alert)
            if key not in stored:
                value = table.get(key)
                stored[key] = DedupEntry.from_dict(value) if value else None
            before = changed.get(key) or stored[key]
            decision = decide(before, record.alert, now_ms=now, horizon_ms=self.horizon_ms)
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
                if self._owns(partition, event.chain_id):
                    here.append(event)
                else:
                    outbox.add_chain_event(event)
            row = outcome_for(decision, record, key, now_ms=now)
            if row is not None:
                outbox.add_outcomes((row,))
            if decision.verdict is not Verdict.UNREMARKABLE and decision.entry != before:
                changed[key] = decision.entry
        chains = self.chains.step(partition, here, outbox, now) if self.chains and here else {}
        await outbox.flush()
        for key, entry in changed.items():
            table[key] = value = entry.to_dict()
            before = stored[key]
            if before is None or before.expires_at != entry.expires_at:
                self.expiry.remember(partition, key, value)
        if self.chains is not None and chains:
            self.chains.write(partition, chains)

    def _owns(self, partition: int, chain_id: str) -> bool:
        """Whether ``chain_id`` is kept in ``partition`` (then this stage moves it)."""
        return self.chains is not None and partition_for(chain_id, self.partitions) == partition


def register(topology: Topology, chains: Chains | None = None) -> None:
    """``chains``: the chains stage (``agents.chains.register``), for one stateful hop."""
    horizon_ms = topology.settings.dedup_horizon_s * 1000
    stage = Dedup(topology, topology.dedup, horizon_ms=horizon_ms, chains=chains)

    @topology.app.agent(topology.classified, name="dedup", **CRASH_WORKER)
    async def dedup(stream: Any) -> None:
        await each_batch(
            topology,
            stream,
            "classified_alert",
            ClassifiedAlert.from_dict,
            stage,
            lane=routing.CLASSIFIED,
        )
