"""Client-side rate limits: slow down before the platform says no.

ARM throttles per subscription, principal and operation type with token buckets (writes: 200,
refilled at 10/s; reads: 250 at 25/s); Databricks throttles per workspace. One
:class:`TokenBuckets` keeps a bucket per scope (e.g. ``"arm|<subscription>|writes"``,
``"dbx|<workspace>"``). A call takes a token first; an empty bucket answers how long to wait,
and the caller defers the step through the delay tiers instead of sending. What the platform
reports it has left (ARM's ``x-ms-ratelimit-remaining-*`` headers) lowers our bucket, never
raises it, so several workers sharing one quota slow down together.

Pure: ``now`` (seconds) is always a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    capacity: float  # tokens when full: the burst allowed
    refill_per_s: float


# ARM's per-region buckets for one subscription and principal (request-limits-and-throttling)
ARM_READS = Rate(capacity=250, refill_per_s=25)
ARM_WRITES = Rate(capacity=200, refill_per_s=10)


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """Token buckets by scope, created full on first use."""

    def __init__(self, rate: Rate, *, reserve: float = 0.0) -> None:
        """``reserve``: tokens left unused for other clients of the same quota (people,
        other tools), so our last call never drains it to zero."""
        if rate.capacity <= 0 or rate.refill_per_s <= 0:
            raise ValueError("a rate needs a positive capacity and refill")
        if not 0 <= reserve < rate.capacity:
            raise ValueError("the reserve must be below the capacity")
        self.rate = rate
        self.reserve = reserve
        self._buckets: dict[str, _Bucket] = {}

    def take(self, scope: str, now: float) -> float:
        """Take one token: 0.0 when the call may go now, else seconds until one is free
        (nothing is taken then)."""
        bucket = self._refilled(scope, now)
        if bucket.tokens - 1 >= self.reserve:
            bucket.tokens -= 1
            return 0.0
        return (1 + self.reserve - bucket.tokens) / self.rate.refill_per_s

    def observe(self, scope: str, remaining: float, now: float) -> None:
        """The platform said it has ``remaining`` calls left for this scope."""
        bucket = self._refilled(scope, now)
        bucket.tokens = min(bucket.tokens, max(float(remaining), 0.0))

    def tokens(self, scope: str, now: float) -> float:
        return self._refilled(scope, now).tokens

    def _refilled(self, scope: str, now: float) -> _Bucket:
        bucket = self._buckets.get(scope)
        if bucket is None:
            bucket = self._buckets[scope] = _Bucket(self.rate.capacity, now)
        elif now > bucket.at:
            gained = (now - bucket.at) * self.rate.refill_per_s
            bucket.tokens = min(self.rate.capacity, bucket.tokens + gained)
            bucket.at = now
        return bucket
