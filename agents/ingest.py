"""Ingest: raw JSON as it arrives → canonical, classified alerts keyed by dedup key.

Bad input never stops the worker: it lands in the dead-letter topic with the reason.
Alerts that lack run or error facts go to the enrichment stage first.
"""

from __future__ import annotations

from typing import Any

from agents.common import dead_letter, log, now_ms, origin_of
from streams.app import Topology
from streams.policy.dedup import dedup_key
from streams.policy.model import Alert, ClassifiedAlert, Signal
from streams.policy.normalize import NormalizeError, normalize
from streams.policy.rules import classify

# (rules, schedules) as loaded from the defaults and the optional rules file
Rulebook = tuple[Any, Any]


def classify_alert(
    alert: Alert, rulebook: Rulebook, *, received_at: int, origin: str
) -> ClassifiedAlert:
    wants_class = alert.signal in (Signal.FAILURE.value, Signal.WAIT.value)
    classification = classify(alert, *rulebook) if wants_class else None
    return ClassifiedAlert(
        alert=alert, received_at=received_at, origin=origin, classification=classification
    )


def register(topology: Topology, rulebook: Rulebook) -> None:
    app = topology.app

    @app.agent(topology.raw, name="ingest")
    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                await _ingest_one(topology, rulebook, message)
            except Exception as exc:  # a bug must not stop the stream; keep the message
                log.exception("ingest failed on %s", origin_of(message))
                await dead_letter(topology, message, "internal_error", repr(exc))


async def _ingest_one(topology: Topology, rulebook: Rulebook, message: Any) -> None:
    received = now_ms()
    try:
        alerts = normalize(message.value or b"", received_at_ms=received)
    except NormalizeError as exc:
        await dead_letter(topology, message, exc.reason, str(exc))
        return
    origin = origin_of(message)
    for alert in alerts:
        record = classify_alert(alert, rulebook, received_at=received, origin=origin)
        target = topology.enrich if alert.signal == Signal.ENRICH.value else topology.classified
        await target.send(key=dedup_key(alert), value=record.to_dict())
