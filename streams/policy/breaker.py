"""Circuit breakers: an outage must not become a retry storm.

One breaker per platform target (an ADF factory, a Databricks workspace). After
``threshold`` consecutive transient or throttled failures it opens: steps for that target
are deferred, without calling it, until ``cooldown_s`` has passed. Then one call is let
through (half-open): a success closes the breaker, a failure opens it again for another
cool-down. Deferred steps keep their place and their retry budget; the platform's own
problem is not counted against the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Breaker:
    threshold: int = 5
    cooldown_s: float = 60.0
    failures: int = 0  # consecutive
    open_until: float = 0.0  # epoch seconds; 0 = closed
    probing: bool = False  # half-open: one call is out to test the target

    def wait_s(self, now: float) -> float:
        """0 when a call may go out now, else how long to defer it."""
        if self.open_until == 0.0:
            return 0.0
        if now < self.open_until:
            return self.open_until - now
        if self.probing:  # someone is already testing the target; the rest wait a little
            return min(self.cooldown_s, 5.0)
        self.probing = True
        return 0.0

    def succeeded(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.open_until = now + self.cooldown_s
            self.probing = False

    @property
    def is_open(self) -> bool:
        return self.open_until != 0.0


@dataclass
class Breakers:
    threshold: int = 5
    cooldown_s: float = 60.0
    by_target: dict[str, Breaker] = field(default_factory=dict)

    def for_target(self, target: str) -> Breaker:
        breaker = self.by_target.get(target)
        if breaker is None:
            breaker = self.by_target[target] = Breaker(self.threshold, self.cooldown_s)
        return breaker


def target_of(source: str, scope: str) -> str:
    return f"{source}|{scope}"
