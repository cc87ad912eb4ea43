"""The kill switch: which scopes are paused, and what a paused action does.

``pipemedic pause [--scope S]`` writes a :class:`~streams.policy.model.Pause` to the
``control`` topic and every worker reads that topic whole (:mod:`agents.control`), so each
holds the same :class:`Pauses`. A scope is ``*`` (everything) or a target pattern: factory
names or workspace ids, shell-style, case-insensitive, as in the rollout table.

An action that meets a pause on its way to the platform is not dropped and not failed: it is
deferred (:func:`hold`) and looked at again ``recheck_s`` later, without spending a retry,
until the scope is resumed. Paging people is never paused. The audit trail gets one row per
action and pause (not one per recheck), and one row for the pause and the resume themselves
(:func:`control_row`), with who and why.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace

from streams.policy.ids import event_id
from streams.policy.model import ActionRequest, Alert, Outcome, Pause
from streams.policy.steps import Effects, defer

EVERYTHING = "*"
PAUSED = "paused"  # the audit row of a pause (not a chain transition)
RESUMED = "resumed"
CONTROL_STATES = frozenset({PAUSED, RESUMED})


def covers(pause: Pause, alert: Alert) -> bool:
    return pause.scope == EVERYTHING or fnmatch.fnmatchcase(
        alert.scope.lower(), pause.scope.lower()
    )


class Pauses:
    """The pauses in force: the latest record of each scope, resumes removing them."""

    def __init__(self) -> None:
        self._by_scope: dict[str, Pause] = {}

    def apply(self, pause: Pause) -> None:
        if pause.paused:
            self._by_scope[pause.scope] = pause
        else:
            self._by_scope.pop(pause.scope, None)

    def covering(self, alert: Alert) -> Pause | None:
        """The pause that holds actions on ``alert``'s target, if any (the oldest first)."""
        found = [p for p in self._by_scope.values() if covers(p, alert)]
        return min(found, key=lambda p: p.at) if found else None

    @property
    def active(self) -> tuple[Pause, ...]:
        return tuple(sorted(self._by_scope.values(), key=lambda p: p.at))


def hold(request: ActionRequest, pause: Pause, *, recheck_s: float, now_ms: int) -> Effects:
    """Defer ``request`` while ``pause`` holds it: a row the first time this pause meets this
    action, none on the rechecks after."""
    mark = f"{pause.scope}@{pause.at}"
    reason = f"paused ({_scope_words(pause.scope)}) by {pause.by}" + (
        f": {pause.reason}" if pause.reason else ""
    )
    effects = defer(request, wait_s=recheck_s, reason=reason, now_ms=now_ms)
    (again,) = effects.requests
    again = replace(again, context={**again.context, "paused": mark})
    seen = request.context.get("paused") == mark
    return replace(effects, requests=(again,), outcomes=() if seen else effects.outcomes)


def control_row(pause: Pause) -> Outcome:
    """The audit row of a pause or a resume (kept out of the chains view)."""
    state = PAUSED if pause.paused else RESUMED
    detail = f"{state} {_scope_words(pause.scope)} by {pause.by}" + (
        f": {pause.reason}" if pause.reason else ""
    )
    return Outcome(
        event_id=event_id("control", state, pause.scope, pause.at),
        at=pause.at,
        chain_id="",
        dedup_key=f"control|{pause.scope}",
        state=state,
        scope=pause.scope,
        detail=detail,
    )


def _scope_words(scope: str) -> str:
    return "everything" if scope == EVERYTHING else f"scope {scope}"
