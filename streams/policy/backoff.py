"""Backoff expressed as delay-tier topics.

Every record in a tier waits the same time, so within a partition the head record is always
the one due first: a partition only ever waits for its head, and no other partition waits with
it (Spring Kafka's non-blocking retries). The consumer is not paused for that: the delay agent
holds a partition's messages in memory, unacknowledged, until the head is due
(``agents/delay.py`` says why). Records routed together travel as one batch message, held
until its last item's hop ends: at most the sender's linger later than the first's. The tiers
are derived from the configured schedules: a wait that is not a tier is rounded *up* to the
next tier (a record never fires early), and a wait longer than the largest tier hops through
it several times, each hop a fixed delay, so no single hold outlives the largest tier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Hop:
    """Where a record waits next and until when (epoch ms)."""

    tier_s: int
    hop_due_at: int


def tier_name(delay_s: int) -> str:
    return f"{delay_s}s"


def tier_seconds(name: str) -> int:
    """The delay of a tier named by :func:`tier_name`."""
    return int(name.removesuffix("s"))


def tier_topic(delay_s: int) -> str:
    return f"delay-{tier_name(delay_s)}"


def derive_tiers(
    schedules: Iterable[Sequence[float]], extra: Iterable[float] = ()
) -> tuple[int, ...]:
    """All distinct whole-second delays of all schedules (plus poll intervals), ascending."""
    delays = {max(1, math.ceil(d)) for schedule in schedules for d in schedule}
    delays.update(max(1, math.ceil(d)) for d in extra)
    return tuple(sorted(delays))


def delay_for_attempt(schedule: Sequence[float], attempt: int) -> float:
    """The wait before ``attempt`` (1-based); past the schedule's end the last delay repeats."""
    if not schedule:
        return 0.0
    return float(schedule[min(max(attempt, 1), len(schedule)) - 1])


def choose_delay(schedule: Sequence[float], attempt: int, retry_after_s: float | None) -> float:
    """A platform's Retry-After overrides the schedule for that attempt."""
    if retry_after_s is not None and retry_after_s >= 0:
        return retry_after_s
    return delay_for_attempt(schedule, attempt)


def plan_hop(tiers: Sequence[int], now_ms: int, due_at_ms: int) -> Hop | None:
    """The next tier for a record due at ``due_at_ms``; None when it is due now.

    The smallest tier that covers the remaining wait, else the largest tier (and another
    hop after it). Rounding up means a record can fire up to one tier-gap late, never early.
    """
    remaining_ms = due_at_ms - now_ms
    if remaining_ms <= 0 or not tiers:
        return None
    for tier in tiers:
        if tier * 1000 >= remaining_ms:
            return Hop(tier, now_ms + tier * 1000)
    largest = tiers[-1]
    return Hop(largest, now_ms + largest * 1000)


def hold_ms(hop_due_at_ms: int, now_ms: int) -> int:
    """How long the head record of a tier partition must still wait (0 when due)."""
    return max(0, hop_due_at_ms - now_ms)
