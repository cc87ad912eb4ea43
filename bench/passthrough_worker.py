"""The bare Faust baseline for ``bench/ingest.py``: one agent that only forwards.

Run as a child process, configured exactly like a pipemedic worker (``PIPEMEDIC_*``
variables, the app from :func:`streams.app.create_app`, so broker, session and timeouts
match, and the same event loop), plus ``BENCH_SOURCE`` and ``BENCH_SINK``. It reads raw bytes from the source topic
and sends each message unchanged to the sink: the framework's own floor per message.

``BENCH_HOPS=n`` (default 1) chains n such agents through topics ``bench-hop-1`` ..
``bench-hop-<n-1>`` (created by the caller): the framework's floor for a topology whose
messages pass n agents, as pipemedic's pass ingest -> dedup -> chains.

``BENCH_WRITES=k`` (default 0; one agent only) also sets k keys of a Faust table per
forwarded message, each a small dict like a dedup entry: the framework's floor for a design
that keeps its per-run state in Faust tables (each write is one changelog message).
"""

from __future__ import annotations

import os
from typing import Any

import faust

from pipemedic.tansu import apply_broker_workarounds
from pipemedic.worker import load_rulebook, plan_tiers, use_event_loop
from streams.app import create_app
from streams.settings import Settings


def main() -> None:
    settings = Settings()
    use_event_loop(settings)  # as a pipemedic worker does
    apply_broker_workarounds(settings)  # as a pipemedic worker on this broker does
    tiers = plan_tiers(settings, load_rulebook(settings.rules_file)[1])
    app = create_app(settings, tiers)
    options = {
        "key_type": str,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.partitions,
    }
    hops = int(os.environ.get("BENCH_HOPS", "1"))
    writes = int(os.environ.get("BENCH_WRITES", "0"))
    names = [os.environ["BENCH_SOURCE"], *hop_topics(hops), os.environ["BENCH_SINK"]]
    if writes and hops == 1:
        table = app.Table("state", default=None, partitions=settings.partitions, key_type=str)
        app.agent(app.topic(names[0], **options), name="forward-and-write")(
            forwarder(app.topic(names[1], **options), table, writes)
        )
    else:
        for n, (source, sink) in enumerate(zip(names, names[1:], strict=False)):
            app.agent(app.topic(source, **options), name=f"forward-{n}")(
                forwarder(app.topic(sink, **options))
            )

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


def hop_topics(hops: int) -> list[str]:
    return [f"bench-hop-{i}" for i in range(1, hops)]


def forwarder(sink: Any, table: Any = None, writes: int = 0) -> Any:
    async def forward(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            for i in range(writes):
                table[f"{message.partition}:{message.offset}:{i}"] = {
                    "chain_id": f"adf|factory|{message.offset}-{i}",
                    "failure_seen": True,
                    "first_seen_at": message.timestamp,
                    "expires_at": message.timestamp + 604_800_000,
                }
            await sink.send(key=event.key, value=event.value)

    return forward


if __name__ == "__main__":
    main()
