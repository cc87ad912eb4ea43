"""``pipemedic approvals``: what waits for a person's decision, from the workers' own state.

The chains stage keeps every chain in a Faust table, and a table is its changelog topic
(``<app id>-chains-changelog``, compacted): the latest value per chain id. This reads that
topic to its end, as the worker's table recovery would, and lists the chains waiting in
approval mode with what would be done, since when and until when (the estate's
``notifications.approval_ttl_s``). No ClickHouse scan; it connects to the broker like the
worker does (SASL for Event Hubs included, :mod:`pipemedic.kafka`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from pipemedic import kafka
from streams.policy.notices import awaiting_approvals


@dataclass(frozen=True)
class Waiting:
    chain_id: str
    action: str  # what would be done
    attempt: int
    source: str
    scope: str
    pipeline: str
    run_id: str
    error_type: str
    since_ms: int
    expires_ms: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def waiting_from(table: dict[str, dict[str, Any]], ttl_s: int) -> list[Waiting]:
    """The chains of ``table`` (chain id -> stored chain) that wait for a decision."""
    found = []
    for chain_id, (expires_ms, request) in awaiting_approvals(table.items(), ttl_s).items():
        alert = request.alert
        found.append(
            Waiting(
                chain_id=chain_id,
                action=request.action,
                attempt=request.attempt,
                source=alert.source,
                scope=alert.scope,
                pipeline=alert.pipeline or alert.job_id,
                run_id=alert.run_id,
                error_type=request.classification.error_type,
                since_ms=int(table[chain_id].get("updated_at", 0)),
                expires_ms=expires_ms,
            )
        )
    return sorted(found, key=lambda w: (w.since_ms, w.chain_id))


async def read_table(
    broker: str | kafka.ClientOptions, topic: str, prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """The latest value per key of a table's changelog ``topic`` (deleted keys dropped);
    ``prefix``: only keys under it, without it (a table of the compact profile's shared one)."""
    from aiokafka.structs import TopicPartition

    from pipemedic.tansu import true_end_offsets

    consumer = kafka.consumer(
        broker, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    table: dict[str, dict[str, Any]] = {}
    try:
        if topic not in await consumer.topics():
            return table
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await true_end_offsets(broker, await consumer.end_offsets(tps))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset < ends[tp]:
                        _apply(table, message.key, message.value, prefix)
                    if message.offset + 1 >= ends[tp]:
                        pending.discard(tp)
    finally:
        await consumer.stop()
    return table


def _apply(
    table: dict[str, dict[str, Any]], key: bytes | None, value: bytes | None, prefix: str
) -> None:
    if key is None:
        return
    name = str(json.loads(key))  # Faust's table keys and values are JSON
    if not name.startswith(prefix):
        return
    name = name[len(prefix) :]
    decoded = json.loads(value) if value else None
    if decoded:
        table[str(name)] = decoded
    else:
        table.pop(str(name), None)


def waiting_now(settings: Any, on_broker: Any) -> list[Waiting]:
    """What waits now, for ``pipemedic approvals``; ``on_broker`` runs the read against the
    configured broker (the CLI's bounded runner)."""
    from streams.app import table_changelog
    from streams.estate import load_estate

    ttl_s = load_estate(settings.estate_file).notifications.approval_ttl_s
    topic, prefix = table_changelog(settings, "chains")
    table = on_broker(settings, lambda client: read_table(client, topic, prefix))
    return waiting_from(table, ttl_s)
