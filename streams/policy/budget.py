"""The daily cost cap: no action may take today's estimated spend past the cap.

Spend is the estimated cost of executed actions (``action_cost_usd``) in the current UTC
day, the same figure the audit trail and the cost dashboard add up. A worker knows what the
audit trail held when it last looked (every worker's executed actions) plus what it charged
itself since. Its own charges from shortly before a look are kept too (they may not have
reached the trail yet): counting one twice blocks a little early, never late. The cap then
holds across workers except for what other workers charge between two looks.

An action is charged when it is about to run (so many actions in flight cannot all pass the
same check) and refunded if it ended without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


def day_of(now_ms: int) -> int:
    """The UTC day number of an epoch-ms time."""
    return now_ms // DAY_MS


@dataclass
class Budget:
    cap_usd: float  # 0 or less: no cap
    lag_ms: int = 10_000  # own charges this recent before a look count as not yet recorded
    day: int = -1
    recorded_usd: float = 0.0  # today's spend in the audit trail at the last look
    charges: list[tuple[int, float]] = field(default_factory=list)  # (at, usd), this day
    looks: int = 0  # looks at the audit trail so far

    def spent_usd(self, now_ms: int) -> float:
        self._roll(now_ms)
        return self.recorded_usd + sum(usd for _, usd in self.charges)

    def allows(self, cost_usd: float, now_ms: int) -> bool:
        if self.cap_usd <= 0 or cost_usd <= 0:
            return True
        return self.spent_usd(now_ms) + cost_usd <= self.cap_usd + 1e-9

    def charge(self, cost_usd: float, now_ms: int) -> None:
        self._roll(now_ms)
        if cost_usd > 0:
            self.charges.append((now_ms, cost_usd))

    def refund(self, cost_usd: float, charged_at_ms: int) -> None:
        if (charged_at_ms, cost_usd) in self.charges:
            self.charges.remove((charged_at_ms, cost_usd))

    def looked(self, recorded_usd: float, *, looked_at_ms: int) -> None:
        """The audit trail held ``recorded_usd`` for the day of ``looked_at_ms`` when a look
        began at that time."""
        if day_of(looked_at_ms) < self.day:  # a look from before midnight says nothing of today
            return
        self.looks += 1
        self._roll(looked_at_ms)
        self.recorded_usd = recorded_usd
        since = looked_at_ms - self.lag_ms
        self.charges = [(at, usd) for at, usd in self.charges if at >= since]

    def why_not(self, cost_usd: float, now_ms: int) -> str:
        return (
            f"daily cost cap: ${self.spent_usd(now_ms):.2f} of ${self.cap_usd:.2f} spent today, "
            f"this action would add ${cost_usd:.2f}"
        )

    def _roll(self, now_ms: int) -> None:
        day = day_of(now_ms)
        if day != self.day:  # a new UTC day starts from nothing
            self.day, self.recorded_usd, self.charges = day, 0.0, []
