"""The kill switch, followed by every worker: the whole ``control`` topic into :class:`Pauses`.

Not a Faust agent: an agent's partitions are shared out among the workers of the group, and
every worker must see every pause. So each worker reads the topic with a consumer of its own
(no group, from the beginning, the worker's client settings, SASL for Event Hubs included),
applies each record in order, and keeps following it; a pause reaches the executors within
one fetch (``broker_fetch_max_wait_ms`` on the embedded broker, 500 ms by default).
Undecodable records are logged and skipped (a control record is written by our own CLI; it
is never dead-lettered into the pipeline's topics).
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.common import log
from pipemedic import kafka
from streams.app import Topology
from streams.codecs import Undecodable, decode
from streams.policy import routing
from streams.policy.model import Pause
from streams.policy.pauses import Pauses

RETRY_S = 2.0  # after the broker failed us: try again


async def follow(client: Any, topic: str, pauses: Pauses, *, poll_ms: int = 200) -> None:
    """Apply every record of ``topic`` to ``pauses``, from the beginning, for ever."""
    consumer = kafka.consumer(
        client, topic, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        while True:
            for messages in (await consumer.getmany(timeout_ms=poll_ms)).values():
                for message in messages:
                    try:
                        pause = Pause.from_dict(decode("pause", message.value))
                    except (Undecodable, TypeError, ValueError) as exc:
                        log.warning("control record at offset %s skipped: %s", message.offset, exc)
                        continue
                    pauses.apply(pause)
                    log.warning(
                        "%s %s by %s%s",
                        "paused" if pause.paused else "resumed",
                        pause.scope,
                        pause.by,
                        f": {pause.reason}" if pause.reason else "",
                    )
    finally:
        await consumer.stop()


def register(topology: Topology, pauses: Pauses) -> None:
    settings = topology.settings
    topic = routing.prefixed(routing.CONTROL, settings.topic_prefix)

    @topology.app.task
    async def follow_control() -> None:
        while True:
            try:
                await follow(kafka.client_options(settings), topic, pauses)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away: the pauses we know stay in force
                log.warning("cannot follow %s: %s; again in %.0fs", topic, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
