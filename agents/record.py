"""Record: every outcome into ClickHouse, in batches, offsets committed only after storing.

Each message on ``outcomes`` already holds the rows of one step; up to ``sink_batch_size``
messages (or what arrived within ``sink_flush_s``) go into one insert.

The store is blocking (chDB in-process, or clickhouse-connect), so writes run on one
dedicated thread. When the store is unavailable the batch is retried after the wait the
writer asks for; the stream does not take more meanwhile (backpressure), and replayed rows
collapse on their event id, so nothing counts twice.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.common import CRASH_WORKER, dead_letter, dead_letter_failure, log
from streams.adapters.clickhouse import OutcomeWriter, SinkBackpressure
from streams.adapters.errors import PlatformError
from streams.app import Topology
from streams.codecs import Undecodable, decode_items
from streams.policy.model import Outcome


def register(topology: Topology, writer: OutcomeWriter) -> None:
    app = topology.app
    settings = topology.settings
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    async def store(rows: list[Outcome]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(thread, writer.write, rows)
                return
            except SinkBackpressure as wait:
                log.warning("%s", wait)
                await asyncio.sleep(wait.retry_after_s)

    @app.agent(topology.outcomes, name="record", **CRASH_WORKER)
    async def record(stream: Any) -> None:
        async for events in stream.noack_take(
            settings.sink_batch_size, within=settings.sink_flush_s
        ):
            rows, good = [], []
            for event in events:
                try:
                    rows += [Outcome.from_dict(row) for row in decode_items("outcome", event.value)]
                    good.append(event)
                except Undecodable as exc:
                    await dead_letter_failure(topology, event.message, exc, audit=False)
            try:
                await store(rows)
            except PlatformError as exc:  # the store refuses these rows for good: keep them
                for event in good:
                    await dead_letter(
                        topology, event.message, "sink_rejected", str(exc), audit=False
                    )
            for event in events:
                await stream.ack(event)
