"""Record: every outcome into ClickHouse, in batches, offsets committed only after storing.

Each message on ``outcomes`` already holds the rows of one step; up to ``sink_batch_size``
messages (or what arrived within ``sink_flush_s``) go into one insert. Rows go from the Avro
decoder to the store as dicts, without an ``Outcome`` object each: on this path nothing but
the store reads them.

The store is blocking (chDB in-process, or clickhouse-connect) and lets go of the GIL while
it inserts, so writes run on one dedicated thread while the agent decodes the next batch:
one batch being stored, one being prepared. Batches are stored, and their messages
acknowledged, one after the other in offset order. When the store is unavailable the batch is
retried after the wait the writer asks for; the stream does not take more meanwhile
(backpressure), and replayed rows collapse on their event id, so nothing counts twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from agents.common import CRASH_WORKER, dead_letter, dead_letter_failure, log
from agents.metrics import SINK_LAG, SINK_ROWS
from streams.adapters.clickhouse import OutcomeWriter, SinkBackpressure
from streams.adapters.errors import PlatformError
from streams.app import Topology
from streams.codecs import Undecodable, decode_items


def register(topology: Topology, writer: OutcomeWriter) -> None:
    app = topology.app
    settings = topology.settings
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    @app.agent(topology.outcomes, name="record", **CRASH_WORKER)
    async def record(stream: Any) -> None:
        storing: asyncio.Future[None] | None = None
        try:
            async for events in stream.noack_take(
                settings.sink_batch_size, within=settings.sink_flush_s
            ):
                rows, good = await decoded(topology, events)
                if storing is not None:
                    await storing  # in order: a batch is acknowledged after the one before
                storing = asyncio.ensure_future(
                    store_batch(topology, writer, thread, rows, good, events, stream.ack)
                )
                storing.add_done_callback(_report_failure)
        finally:
            if storing is not None and not storing.done():
                storing.cancel()  # unacknowledged: the rows come again and collapse


async def decoded(topology: Topology, events: Sequence[Any]) -> tuple[list[dict], list[Any]]:
    """The rows of ``events``, and the events they came from; a message that does not
    decode is dead-lettered (and acknowledged with its batch)."""
    rows: list[dict[str, Any]] = []
    good = []
    for event in events:
        try:
            rows += decode_items("outcome", event.value)
            good.append(event)
        except Undecodable as exc:
            await dead_letter_failure(topology, event.message, exc, audit=False)
    return rows, good


async def store_batch(
    topology: Topology,
    writer: OutcomeWriter,
    thread: Executor,
    rows: list[dict[str, Any]],
    good: Sequence[Any],
    events: Sequence[Any],
    ack: Callable[[Any], Awaitable[Any]],
) -> None:
    """Store ``rows``, then acknowledge ``events``; rows the store refuses for good are
    kept as dead letters instead."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                await loop.run_in_executor(thread, writer.write, rows)
                break
            except SinkBackpressure as wait:
                log.warning("%s", wait)
                await asyncio.sleep(wait.retry_after_s)
        SINK_ROWS.inc(len(rows))
        if good:
            newest_s = max(event.message.timestamp for event in good)
            SINK_LAG.set(max(topology.clock.now_ms() / 1000 - newest_s, 0.0))
    except PlatformError as exc:  # the store refuses these rows for good: keep them
        for event in good:
            await dead_letter(topology, event.message, "sink_rejected", str(exc), audit=False)
    for event in events:
        await ack(event)


def _report_failure(storing: asyncio.Future[None]) -> None:
    # the agent re-raises it when it takes the next batch; until then it is only logged
    if not storing.cancelled() and storing.exception() is not None:
        log.error("storing outcomes failed", exc_info=storing.exception())
