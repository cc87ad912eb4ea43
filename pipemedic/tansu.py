"""Correct end offsets and prompt fetches on the embedded Tansu broker.

Tansu 0.6 answers ListOffsets(latest) with the *last batch's* base offset + 1, so after
multi-record batches ``end_offsets`` is too low, and Faust's table recovery, which reads a
changelog up to that offset, stops early and restores stale state. The Fetch response's
high watermark is right, so :func:`true_end_offsets` fetches once at the reported offset - 1
(the last batch) and reads the watermark from the answer.

:func:`patch_faust_recovery` routes Faust's end-offset lookup through it. It is applied only
for the embedded broker (``Settings.broker_end_offsets_from_fetch``); a real Kafka or Event
Hubs never needs it. The alternative, one record per producer batch, would cost most of the
producers' throughput (``bench/README.md``).

Tansu also holds a fetch that finds no data for the whole ``fetch_max_wait_ms`` even when
data arrives meanwhile, and aiokafka sends no new fetch to a node while one is in flight. Faust
hard-codes that wait at 1500 ms, so every stage that catches up with its input stalls up to
1.5 s (pauses ``bench/ingest.py`` saw inside its measured spans; ``bench/README.md``).
:func:`patch_fetch_wait` sets a shorter wait (``Settings.broker_fetch_max_wait_ms``, embedded
broker only; Kafka answers a fetch as soon as data arrives, so it never needs it).

:func:`apply_broker_workarounds` applies what the settings ask for; every process that runs a
Faust worker on the embedded broker calls it before the worker starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.structs import TopicPartition

FETCH_TIMEOUT_S = 5.0


async def true_end_offsets(bootstrap: Any, listed: Mapping[Any, int]) -> dict[Any, int]:
    """The real end offset of every partition, given what ListOffsets said. ``bootstrap``: an
    address or the client options of :mod:`pipemedic.kafka`."""
    from pipemedic import kafka

    result = dict(listed)
    probe_tps = {
        TopicPartition(tp.topic, tp.partition): tp for tp, end in listed.items() if end > 0
    }
    if not probe_tps:
        return result
    consumer = kafka.consumer(bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(probe_tps))
        for tp in probe_tps:
            consumer.seek(tp, listed[probe_tps[tp]] - 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FETCH_TIMEOUT_S
        pending = set(probe_tps)
        while pending and loop.time() < deadline:
            await consumer.getmany(*pending, timeout_ms=200)
            for tp in list(pending):
                watermark = consumer.highwater(tp)
                if watermark is not None:
                    result[probe_tps[tp]] = max(listed[probe_tps[tp]], watermark)
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return result


def patch_faust_recovery(bootstrap: str) -> None:
    """Make this process's Faust workers see true end offsets (idempotent)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread._highwaters, "_pipemedic_tansu", False):
        return
    listed_highwaters = AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
        listed = await listed_highwaters(self, partitions)
        return await true_end_offsets(bootstrap, listed)

    _highwaters._pipemedic_tansu = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._highwaters = _highwaters


def patch_fetch_wait(wait_ms: int) -> None:
    """Faust worker consumers of this process wait at most ``wait_ms`` for a fetch."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = getattr(AIOKafkaConsumerThread._create_worker_consumer, "_pipemedic_create", None)
    create = create or AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, *args: Any, **kwargs: Any) -> Any:
        consumer = create(self, *args, **kwargs)
        consumer._fetch_max_wait_ms = wait_ms  # read when the consumer starts its fetcher
        return consumer

    _create_worker_consumer._pipemedic_create = create  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


def apply_broker_workarounds(settings: Any) -> None:
    """The embedded-broker accommodations ``settings`` ask for (none for Kafka / Event Hubs)."""
    if settings.broker_end_offsets_from_fetch:
        patch_faust_recovery(settings.broker_url.removeprefix("kafka://"))
    if settings.broker_fetch_max_wait_ms:
        patch_fetch_wait(settings.broker_fetch_max_wait_ms)
