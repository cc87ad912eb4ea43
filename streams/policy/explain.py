"""``pipemedic policy explain``: what pipemedic would do with an alert, without doing it.

The same pure steps the worker takes - normalise the raw payload, check the estate, classify
with the rule table, pick the mode with the rollout table - stopped before anything is sent.
Enrichment (a platform read) is not made: an alert that needs it is classified on the facts
it carries, and the answer says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.policy import backoff
from streams.policy.model import Action, Alert, Classification, Signal
from streams.policy.normalize import normalize_detailed
from streams.policy.rollout import Rollout
from streams.policy.scope import EstateScope


@dataclass(frozen=True)
class Explanation:
    alert: Alert
    classification: Classification | None
    mode: str
    set_by: str
    would: str

    def row(self) -> dict[str, Any]:
        c = self.classification
        return {
            "source": self.alert.source,
            "target": self.alert.scope,
            "pipeline": self.alert.pipeline,
            "run": self.alert.run_id,
            "error_type": c.error_type if c else "",
            "rule": c.reason if c else "",
            "risk": c.risk if c else "",
            "action": c.action if c else "",
            "mode": self.mode,
            "set_by": self.set_by,
            "would": self.would,
        }


def explain(
    raw: bytes,
    *,
    classify: Callable[[Alert], Classification],
    rollout: Rollout,
    scope: EstateScope,
    now_ms: int,
) -> tuple[list[Explanation], tuple[str, ...]]:
    """Every alert in ``raw`` with its decision, and the skip reasons of records that yielded
    none (raises ``NormalizeError`` for a payload the worker would dead-letter)."""
    found = normalize_detailed(raw, received_at_ms=now_ms)
    return [_one(alert, classify, rollout, scope) for alert in found.alerts], found.skipped


def _one(
    alert: Alert,
    classify: Callable[[Alert], Classification],
    rollout: Rollout,
    scope: EstateScope,
) -> Explanation:
    outside = scope.outside(alert)
    if outside is not None:
        return Explanation(alert, None, "", "estate", f"ignore: {outside} is not in the estate")
    if alert.signal == Signal.SUCCESS.value:
        return Explanation(alert, None, "", "", "close the chain of this run, if one is open")
    if alert.signal in (Signal.LINK.value, Signal.WAIT.value):
        return Explanation(alert, None, "", "", f"record only ({alert.signal})")
    classification = classify(alert)
    mode, set_by = rollout.decide(alert, classification)
    enrich = ""
    if alert.signal == Signal.ENRICH.value:
        enrich = " (after enrichment, a read of the run; classified here on the alert's facts)"
    if classification.action == Action.MANUAL.value:
        would = f"hand to people: {classification.reason}"
    else:
        delay_s = backoff.choose_delay(classification.backoff_s, 1, None)
        act = f"{classification.action} in {delay_s:g}s (attempt 1 of {classification.max_retries})"
        would = {
            "observe": f"record only: would {act}; no platform write",
            "approval": f"ask a person to approve {act}",
            "automatic": act,
        }[mode]
    return Explanation(alert, classification, mode, set_by, would + enrich)
