"""Ingest: raw JSON as it arrives → canonical, classified alerts keyed by dedup key.

Raw messages are taken in batches (up to ``ingest_batch_size``, or what arrived within
``ingest_linger_s``); the alerts they hold go downstream as one batch per partition of
``alerts-classified``, so dedup sees few, full messages. Offsets are acknowledged only after
the batch is sent: a crash repeats alerts (dedup absorbs them), never loses one.

Bad input never stops the worker: it lands in the dead-letter topic with the reason. An alert
about a factory or workspace outside the estate is recorded as ``ignored`` and goes no further.
What the stage saw (records seen, alerts, dropped as needing no action, ignored, invalid) is
counted per shape and written as ``ingested`` rows every ``ingest_tally_s``
(:mod:`streams.policy.tally`).
Alerts that lack run or error facts go to the enrichment stage first, one by one.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from agents import metrics
from agents.common import (
    CRASH_WORKER,
    InOrderAcks,
    dead_letter,
    dead_letter_failure,
    origin_of,
)
from agents.outbox import Outbox, send_outcomes
from streams.app import Topology
from streams.codecs import encode
from streams.policy import routing
from streams.policy.dedup import dedup_key
from streams.policy.model import Alert, ClassifiedAlert, Signal
from streams.policy.normalize import NormalizeError, normalize_detailed
from streams.policy.replays import marked, replay_mark
from streams.policy.root_cause import explained
from streams.policy.rules import Classifier
from streams.policy.scope import EstateScope, ignored_row
from streams.policy.tally import IngestTally, message_counts


def classify_alert(
    alert: Alert, classifier: Classifier, *, received_at: int, origin: str
) -> ClassifiedAlert:
    """The alert with its classification; a hand-off carries what people need to know
    (:func:`streams.policy.root_cause.explained`)."""
    classification = None
    if alert.signal in (Signal.FAILURE.value, Signal.WAIT.value):
        alert, classification = explained(alert, classifier(alert))
    return ClassifiedAlert(
        alert=alert, received_at=received_at, origin=origin, classification=classification
    )


def register(topology: Topology, classifier: Classifier, scope: EstateScope) -> IngestTally:
    """The ingest stage; returns its tally, closed into ``ingested`` rows every
    ``ingest_tally_s``."""
    app = topology.app
    settings = topology.settings
    tally = IngestTally(since_ms=topology.clock.now_ms())
    worker = f"{socket.gethostname()}:{os.getpid()}"

    @app.timer(interval=settings.ingest_tally_s)
    async def write_tally() -> None:
        await send_tally(topology, tally, worker)

    @app.agent(topology.raw, name="ingest", **CRASH_WORKER)
    async def ingest(stream: Any) -> None:
        acks = InOrderAcks(stream)  # a copy superseded by a partition sent back is never acked
        async for events in stream.noack_take(
            settings.ingest_batch_size, within=settings.ingest_linger_s
        ):
            outbox = Outbox(topology)
            for event in events:
                acks.take(event)
                try:
                    await _ingest_one(topology, classifier, scope, outbox, event.message, tally)
                except Exception as exc:  # a bug must not stop the stream; keep the message
                    await dead_letter_failure(topology, event.message, exc)
            await outbox.flush()
            for event in events:
                await acks.done(event)

    return tally


async def send_tally(topology: Topology, tally: IngestTally, worker: str) -> None:
    """Close the tally's window into its rows and send them to the audit trail."""
    rows = tally.close(topology.clock.now_ms(), worker)
    if rows:
        await send_outcomes(topology, rows)


async def _ingest_one(
    topology: Topology,
    classifier: Classifier,
    scope: EstateScope,
    outbox: Outbox,
    message: Any,
    tally: IngestTally | None = None,
) -> None:
    received = topology.clock.now_ms()
    try:
        found = normalize_detailed(message.value or b"", received_at_ms=received)
    except NormalizeError as exc:
        metrics.MESSAGES.labels("dead_letter").inc()
        await dead_letter(topology, message, exc.reason, str(exc))
        return
    origin = origin_of(message)
    replay = replay_mark(getattr(message, "headers", None))  # a replay: chains only observe
    ignored = 0
    for alert in found.alerts:
        alert = marked(alert, replay)
        outside = scope.outside(alert)
        if outside is not None:  # never acted on: recorded once, no chain, nobody paged
            outbox.add_outcomes((ignored_row(alert, dedup_key(alert), outside, now_ms=received),))
            ignored += 1
            continue
        record = classify_alert(alert, classifier, received_at=received, origin=origin)
        if alert.signal == Signal.ENRICH.value:
            sent = await topology.enrich.send(
                key=dedup_key(alert),
                value=encode("classified_alert", record.to_dict()),
                headers=topology.headers_for(routing.ENRICH),
            )
            await sent  # the broker has it before the raw message is acknowledged
        else:
            outbox.add_classified(record)
    counts = message_counts(len(found.alerts), found.skipped, ignored)
    metrics.count_ingested(found.shape, counts, found.alerts)
    if tally is not None:
        tally.add(found.shape, counts)
