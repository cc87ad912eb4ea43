"""Error modes: which requests are slowed down, throttled, failed or left hanging.

The rules come from the world's ``error_modes`` list and are read like every pipemedic
table: for latency the first matching rule that sets ``latency_ms`` wins (else the world's
``latency_ms``); for failures the first matching rule that still has budget wins. One rule's
effects are used up in a fixed order - ``timeout``, ``throttle``, ``fail_5xx``, ``reject`` -
so ``throttle: {first_n: 2}`` plus ``fail_5xx: {first_n: 1}`` answers 429, 429, 500 and then
lets requests through. Budgets count per rule and reset with the simulator.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from pipemedic.simulator.protocol import SimError
from pipemedic.simulator.world import ErrorMode, Fail5xx, Hang, Reject, Throttle, World

_EFFECTS = ("timeout", "throttle", "fail_5xx", "reject")


@dataclass(frozen=True)
class Verdict:
    latency_s: float = 0.0
    hang_s: float | None = None  # sleep this long, then answer 504
    error: SimError | None = None


class ErrorModes:
    def __init__(self, world: World) -> None:
        self._default_latency_s = world.latency_ms / 1000.0
        self._rules = world.error_modes
        self._used: dict[tuple[int, str], int] = {}

    def reset(self) -> None:
        self._used.clear()

    def judge(self, method: str, path: str) -> Verdict:
        latency_s: float | None = None
        hang_s: float | None = None
        error: SimError | None = None
        for index, rule in enumerate(self._rules):
            if not _matches(rule, method, path):
                continue
            if latency_s is None and rule.latency_ms is not None:
                latency_s = rule.latency_ms / 1000.0
            if hang_s is None and error is None:
                hang_s, error = self._spend(index, rule)
        if latency_s is None:
            latency_s = self._default_latency_s
        return Verdict(latency_s=latency_s, hang_s=hang_s, error=error)

    def _spend(self, index: int, rule: ErrorMode) -> tuple[float | None, SimError | None]:
        for name in _EFFECTS:
            effect = getattr(rule, name)
            if effect is None:
                continue
            used = self._used.get((index, name), 0)
            if effect.first_n is not None and used >= effect.first_n:
                continue
            self._used[(index, name)] = used + 1
            return _outcome(effect)
        return None, None


def _matches(rule: ErrorMode, method: str, path: str) -> bool:
    if rule.method and rule.method.upper() != method:
        return False
    return fnmatch.fnmatchcase(path, rule.path)


def _outcome(effect: Hang | Throttle | Fail5xx | Reject) -> tuple[float | None, SimError | None]:
    if isinstance(effect, Hang):
        return effect.seconds, None
    if isinstance(effect, Throttle):
        return None, SimError(
            429, "simulated throttling: too many requests", retry_after_s=effect.retry_after_s
        )
    if isinstance(effect, Fail5xx):
        return None, SimError(effect.status, f"simulated server error {effect.status}")
    return None, SimError(effect.status, effect.message, effect.code)
