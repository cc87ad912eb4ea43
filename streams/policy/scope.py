"""What the estate covers: an alert about anything else is recorded as ignored, at once.

Nothing outside the estate is ever acted on. Deciding that at ingest, rather than when an
executor finds no client for the factory, means such an alert opens no chain, schedules
nothing and pages nobody: one ``ignored`` row says it arrived and why nothing followed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.policy.ids import event_id
from streams.policy.model import Alert, Outcome, OutcomeState, Source


@dataclass(frozen=True)
class EstateScope:
    factories: frozenset[str]  # ADF factory names, lower-cased (ARM names ignore case)
    workspaces: frozenset[str]  # Databricks workspace ids

    @classmethod
    def of(cls, factories: Iterable[str], workspaces: Iterable[str]) -> EstateScope:
        return cls(frozenset(f.lower() for f in factories), frozenset(map(str, workspaces)))

    def outside(self, alert: Alert) -> str | None:
        """What ``alert`` names that the estate does not hold, or ``None``."""
        if alert.source == Source.ADF.value:
            if alert.scope.lower() not in self.factories:
                return f"ADF factory {alert.scope!r}"
        elif alert.scope not in self.workspaces:
            return f"Databricks workspace {alert.scope!r}"
        return None


def ignored_row(alert: Alert, key: str, what: str, *, now_ms: int) -> Outcome:
    """The one row an alert outside the estate leaves (no chain: nothing was opened)."""
    return Outcome.about(
        alert,
        event_id=event_id("ignored", key, alert.alert_id),
        at=now_ms,
        chain_id="",
        dedup_key=key,
        state=OutcomeState.IGNORED.value,
        first_seen_at=now_ms,
        detail=f"not in estate: {what}",
    )
