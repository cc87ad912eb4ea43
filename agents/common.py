"""Small pieces every agent uses: the clock, sending effects, dead-lettering.

The wall clock is read here and handed to the pure policy as ``now_ms``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from streams.app import Topology
from streams.policy import routing
from streams.policy.dedup import dedup_key
from streams.policy.ids import event_id
from streams.policy.model import ActionRequest, ChainEvent, DeadLetter, Outcome, OutcomeState
from streams.policy.steps import Effects

log = logging.getLogger("pipemedic")


def now_ms() -> int:
    return int(time.time() * 1000)


def origin_of(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


async def send_outcomes(topology: Topology, outcomes: Iterable[Outcome]) -> None:
    for outcome in outcomes:
        await topology.outcomes.send(key=outcome.chain_id, value=outcome.to_dict())


async def send_request(topology: Topology, request: ActionRequest, *, now: int) -> str:
    """Route a request to its action topic, or to the delay tier its wait needs."""
    name, routed = routing.route(request, now_ms=now, tiers=topology.tiers)
    if routed.tier:
        topic = topology.delays[int(routed.tier.rstrip("s"))]
    else:
        topic = topology.actions[routed.action]
    await topic.send(key=routed.chain_id, value=routed.to_dict())
    return name


async def send_chain_event(topology: Topology, event: ChainEvent) -> None:
    await topology.chain_events.send(key=event.chain_id, value=event.to_dict())


async def apply_effects(topology: Topology, effects: Effects, *, now: int) -> None:
    """Carry out what a step decided. Sends come before any table write by the caller."""
    for alert in effects.alerts:
        await topology.classified.send(key=dedup_key(alert.alert), value=alert.to_dict())
    for event in effects.chain_events:
        await send_chain_event(topology, event)
    for request in effects.requests:
        await send_request(topology, request, now=now)
    await send_outcomes(topology, effects.outcomes)


async def dead_letter(topology: Topology, message: Any, reason: str, error: str) -> None:
    """Keep a message we cannot use, with the reason, and count it in the audit trail."""
    at = now_ms()
    payload = message.value if isinstance(message.value, bytes) else bytes(message.value or b"")
    letter = DeadLetter(reason=reason, error=error[:2000], topic=message.topic,
                        partition=message.partition, offset=message.offset, at=at, payload=payload)
    await topology.dead_letter.send(key=reason, value=letter.to_dict())
    where = origin_of(message)
    row = Outcome(event_id=event_id("dead_letter", where), at=at, chain_id="", dedup_key=where,
                  state=OutcomeState.DEAD_LETTER.value, detail=f"{reason}: {error[:500]}")
    await topology.outcomes.send(key=where, value=row.to_dict())
    log.warning("dead-lettered %s: %s (%s)", where, reason, error[:200])
