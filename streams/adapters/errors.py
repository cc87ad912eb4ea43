"""The small set of platform failures the retry policy understands.

Every adapter translates its platform's errors (HTTP status, ARM error codes, Databricks
error codes) into one :class:`PlatformError`; nothing above the adapters ever sees an HTTP
status or an SDK exception.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # 5xx, timeouts, connection resets: try the same step again later
    THROTTLED = "throttled"  # 429 / rate-limit codes: wait ``retry_after_s`` then try again
    AUTH = "auth"  # 401/403 after one token refresh: a human must look
    NOT_FOUND = "not_found"  # the target does not exist (or is outside the estate)
    CONFLICT = "conflict"  # the target is in a state that forbids the call right now
    BAD_REQUEST = "bad_request"  # our request was wrong: retrying will not help


RETRYABLE = frozenset({ErrorKind.TRANSIENT, ErrorKind.THROTTLED, ErrorKind.CONFLICT})


class PlatformError(Exception):
    """A platform call failed; ``kind`` tells the policy what to do about it."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __repr__(self) -> str:
        return (
            f"PlatformError({self.kind.value}, {str(self)!r}, retry_after_s={self.retry_after_s})"
        )


class OutsideEstate(PlatformError):
    """An alert named a factory, workspace or cluster that pipemedic is not configured for."""

    def __init__(self, what: str) -> None:
        super().__init__(ErrorKind.NOT_FOUND, f"{what} is outside the configured estate")


class HeldBack(PlatformError):
    """Our own rate limit held the call back: nothing was sent, so nothing failed.

    Raised before a request is built when the target's token bucket is empty
    (:mod:`streams.policy.throttle`). The step is deferred through the delay tiers like a 429,
    but the platform said nothing, so a circuit breaker must not count it as a failure.
    """

    def __init__(self, what: str, wait_s: float) -> None:
        super().__init__(
            ErrorKind.THROTTLED,
            f"{what}: held back {wait_s:.1f} s by our rate limit",
            retry_after_s=wait_s,
        )
