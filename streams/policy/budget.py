"""The UTC day a spend belongs to (the daily budget: :mod:`streams.policy.admission`)."""

from __future__ import annotations

DAY_MS = 24 * 3600 * 1000


def day_of(now_ms: int) -> int:
    """The UTC day number of an epoch-ms time."""
    return now_ms // DAY_MS
