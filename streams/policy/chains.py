"""Remediation chains: count attempts honestly across reruns, decide the next step.

A chain is one incident followed through every rerun remediation creates. Each event moves
it (``on_event``) and yields *effects* for the wiring to carry out: an action to schedule
and the audit rows to record. A failure is a new attempt only when it is about the run the
chain is currently waiting on; anything else while the chain is in flight joins it as a
duplicate. ``max_retries`` therefore holds across run ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from streams.policy import backoff
from streams.policy.dedup import run_ref
from streams.policy.ids import event_id
from streams.policy.model import (
    FINAL_STATES,
    Action,
    ActionRequest,
    ChainEvent,
    ChainEventKind,
    ChainState,
    Classification,
    Outcome,
    OutcomeState,
    Step,
)
from streams.policy.replays import is_replayed
from streams.policy.rollout import Rollout

HISTORY_LIMIT = 20  # entries kept per chain; the audit trail in ClickHouse keeps all
RESOLVED_BY_PEOPLE = "resolved by people"  # a handed-off chain whose run later succeeded
_WITH_PEOPLE = frozenset({ChainState.MANUAL.value, ChainState.GAVE_UP.value})


@dataclass(frozen=True)
class ChainPolicy:
    mode: str = "automatic"  # observe | approval | automatic
    max_retries_cap: int = 5  # no chain retries more often than this, whatever a rule says
    horizon_ms: int = 7 * 24 * 3600 * 1000  # final chains are forgotten after this
    # a hook to page people (the ``manual`` playbook) is configured: a chain handed to
    # people schedules the ``manual`` action that calls it. Without one, the ``manual`` row
    # in the audit trail (and the dashboard) is the hand-off, and no action is queued.
    page_hook: bool = True
    # failures a replay sent (marked by its header) are observed only, whatever the mode
    replayed_observe_only: bool = False
    # the mode by scope (streams/policy/rollout.py); ``mode`` where no row matches
    rollout: Rollout | None = None

    def mode_for(self, alert: Any, classification: Classification) -> tuple[str, str]:
        """The mode for this failure and what set it (a rollout row, or the global mode)."""
        if self.rollout is None:
            return self.mode, "global mode"
        return self.rollout.decide(alert, classification, default=self.mode)


@dataclass(frozen=True)
class Chain:
    chain_id: str
    state: str
    attempts: int = 0
    max_attempts: int = 0
    current_run: str = ""  # the run whose failure would be the next attempt
    error_type: str = ""
    action: str = ""
    first_seen_at: int = 0
    updated_at: int = 0
    expires_at: int = 0
    history: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()  # run references whose failure already counted as an attempt
    pending: Mapping[str, Any] | None = None  # approval mode: the action waiting for a yes

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["history"] = list(self.history)
        data["runs"] = list(self.runs)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chain:
        values = dict(data)
        values["history"] = tuple(values.get("history", ()))
        values["runs"] = tuple(values.get("runs", ()))
        return cls(**values)

    @property
    def final(self) -> bool:
        return self.state in {s.value for s in FINAL_STATES}


@dataclass(frozen=True)
class ChainStep:
    chain: Chain | None  # what the table holds next (None: nothing to keep)
    schedule: ActionRequest | None = None
    outcomes: tuple[Outcome, ...] = ()


def on_event(
    chain: Chain | None, event: ChainEvent, *, now_ms: int, policy: ChainPolicy
) -> ChainStep:
    kind = event.kind
    if kind == ChainEventKind.FAILURE.value:
        return _on_failure(chain, event, now_ms, policy)
    if chain is None:
        return ChainStep(None)  # success or executor news for a chain we never opened
    if kind in (ChainEventKind.SUCCESS.value, ChainEventKind.RESOLVED.value):
        if kind == ChainEventKind.SUCCESS.value and chain.state in _WITH_PEOPLE:
            # people fixed what was handed to them: the platform shows the run succeeded
            why = f"{RESOLVED_BY_PEOPLE}: {event.detail or 'the platform reports a success'}"
            return _finish(chain, event, ChainState.RESOLVED, now_ms, policy, why)
        if chain.final:
            return ChainStep(chain)
        return _finish(chain, event, ChainState.RESOLVED, now_ms, policy, event.detail or kind)
    if kind == ChainEventKind.EXECUTED.value:
        if chain.final:  # a late or redelivered report must not reopen a closed chain
            return ChainStep(chain)
        updated = replace(
            chain,
            state=ChainState.VERIFYING.value,
            current_run=event.new_run_id or chain.current_run,
            updated_at=now_ms,
            history=_add(chain.history, f"{now_ms}: executed {chain.action} #{event.attempt}"),
        )
        return ChainStep(updated)
    if kind == ChainEventKind.ACTION_ERROR.value:
        if chain.final:
            return ChainStep(chain)
        return _finish(chain, event, ChainState.MANUAL, now_ms, policy, event.detail, page=True)
    if kind in (ChainEventKind.APPROVED.value, ChainEventKind.REJECTED.value):
        return _on_decision(chain, event, now_ms, policy)
    raise ValueError(f"unknown chain event kind {kind!r}")


def _on_failure(
    chain: Chain | None, event: ChainEvent, now_ms: int, policy: ChainPolicy
) -> ChainStep:
    classification = event.classification
    if classification is None:
        raise ValueError("a failure event needs a classification")
    ref = run_ref(event.alert)
    if chain is not None and ref and ref in chain.runs:
        why = "failure of this run already counted"
        return ChainStep(chain, outcomes=(_row(chain, event, OutcomeState.DUPLICATE, now_ms, why),))
    if chain is not None and chain.state == ChainState.RESOLVED.value:
        chain = None  # a new incident of an object whose last one was fixed: start afresh
    if chain is not None:
        in_flight_on_other_run = (
            chain.state in (ChainState.SCHEDULED.value, ChainState.AWAITING_APPROVAL.value)
            or ref != chain.current_run
        )
        if chain.final or in_flight_on_other_run:
            why = f"chain {chain.state}" if chain.final else "chain in flight"
            return ChainStep(
                chain, outcomes=(_row(chain, event, OutcomeState.DUPLICATE, now_ms, why),)
            )
    if chain is None:
        chain = Chain(
            chain_id=event.chain_id,
            state=ChainState.SCHEDULED.value,
            max_attempts=min(classification.max_retries, policy.max_retries_cap),
            error_type=classification.error_type,
            action=classification.action,
            first_seen_at=event.received_at or now_ms,
        )
    attempt = chain.attempts + 1
    runs = (*chain.runs, ref)[-HISTORY_LIMIT:] if ref else chain.runs
    chain = replace(
        chain,
        attempts=attempt,
        current_run=ref,
        updated_at=now_ms,
        runs=runs,
        history=_add(chain.history, f"{now_ms}: failure {ref} ({classification.error_type})"),
    )

    if classification.action == Action.MANUAL.value:
        return _finish(
            chain, event, ChainState.MANUAL, now_ms, policy, classification.reason, page=True
        )
    if attempt > chain.max_attempts:
        why = f"{chain.max_attempts} attempts exhausted"
        return _finish(chain, event, ChainState.GAVE_UP, now_ms, policy, why, page=True)

    delay_s = backoff.choose_delay(classification.backoff_s, attempt, None)
    due_at = now_ms + int(delay_s * 1000)
    # a record a replay sent is only observed, and pages nobody (streams/policy/replays.py)
    replayed = policy.replayed_observe_only and is_replayed(event.alert)
    mode, set_by = policy.mode_for(event.alert, classification)
    scoped = f" ({set_by})" if set_by != "global mode" else ""
    if mode == "observe" or replayed:
        why = f"observe-only: would {classification.action} in {delay_s:g}s (attempt {attempt})"
        why = f"replayed, {why}" if replayed else f"{why}{scoped}"
        observed = _row(chain, event, OutcomeState.OBSERVED, now_ms, why, due_at=due_at)
        step = _finish(chain, event, ChainState.MANUAL, now_ms, policy, why, page=not replayed)
        return replace(step, outcomes=(observed, *step.outcomes))

    request = _request(chain, event, classification, classification.action, due_at, "backoff")
    if mode == "approval":
        why = (
            f"approval needed{scoped}: {classification.action} (attempt {attempt}); "
            f"pipemedic approve '{chain.chain_id}'"
        )
        waiting = replace(
            chain, state=ChainState.AWAITING_APPROVAL.value, pending=request.to_dict()
        )
        row = _row(waiting, event, OutcomeState.AWAITING_APPROVAL, now_ms, why, due_at=due_at)
        return ChainStep(waiting, outcomes=(row,))
    chain = replace(chain, state=ChainState.SCHEDULED.value)
    row = _row(chain, event, OutcomeState.SCHEDULED, now_ms, f"due in {delay_s:g}s", due_at=due_at)
    return ChainStep(chain, schedule=request, outcomes=(row,))


def _on_decision(chain: Chain, event: ChainEvent, now_ms: int, policy: ChainPolicy) -> ChainStep:
    """A person approved or rejected the action a chain is waiting on (approval mode)."""
    if chain.state != ChainState.AWAITING_APPROVAL.value or not chain.pending:
        return ChainStep(chain)  # nothing is waiting: a late or repeated decision
    if event.kind == ChainEventKind.REJECTED.value:
        why = f"rejected {event.detail}".strip()
        return _finish(
            replace(chain, pending=None), event, ChainState.MANUAL, now_ms, policy, why, page=True
        )
    pending = ActionRequest.from_dict(chain.pending)
    request = replace(pending, due_at=max(pending.due_at, now_ms))
    scheduled = replace(
        chain,
        state=ChainState.SCHEDULED.value,
        pending=None,
        updated_at=now_ms,
        history=_add(chain.history, f"{now_ms}: approved {event.detail}".strip()),
    )
    approved = ChainEvent(
        kind=event.kind,
        chain_id=chain.chain_id,
        dedup_key=pending.dedup_key,
        at=now_ms,
        alert=pending.alert,
        classification=pending.classification,
    )
    why = f"approved {event.detail}".strip()
    row = _row(scheduled, approved, OutcomeState.SCHEDULED, now_ms, why, due_at=request.due_at)
    return ChainStep(scheduled, schedule=request, outcomes=(row,))


def _finish(
    chain: Chain,
    event: ChainEvent,
    state: ChainState,
    now_ms: int,
    policy: ChainPolicy,
    why: str,
    *,
    page: bool = False,
) -> ChainStep:
    """Close the chain; a closing that needs people also schedules the ``manual`` action
    (when there is a hook to page them)."""
    closed = replace(
        chain,
        state=state.value,
        updated_at=now_ms,
        expires_at=now_ms + policy.horizon_ms,
        history=_add(chain.history, f"{now_ms}: {state.value} ({why})"),
    )
    row = _row(closed, event, OutcomeState(state.value), now_ms, why)
    schedule = None
    if page and policy.page_hook:
        classification = event.classification or Classification(
            closed.error_type, "high", Action.MANUAL.value, 0, (), why
        )
        schedule = _request(closed, event, classification, Action.MANUAL.value, now_ms, why)
    return ChainStep(closed, schedule=schedule, outcomes=(row,))


def _request(
    chain: Chain,
    event: ChainEvent,
    classification: Classification,
    action: str,
    due_at: int,
    reason: str,
) -> ActionRequest:
    return ActionRequest(
        action_id=f"{chain.chain_id}#{chain.attempts}:{action}",
        chain_id=chain.chain_id,
        dedup_key=event.dedup_key,
        action=action,
        step=Step.EXECUTE.value,
        attempt=chain.attempts,
        max_attempts=chain.max_attempts,
        due_at=due_at,
        alert=event.alert,
        classification=classification,
        origin=event.origin,
        reason=reason,
        first_seen_at=chain.first_seen_at,
        history=chain.history,
    )


def _row(
    chain: Chain,
    event: ChainEvent,
    state: OutcomeState,
    now_ms: int,
    detail: str,
    *,
    due_at: int = 0,
) -> Outcome:
    alert = event.alert
    classification = event.classification
    return Outcome.about(
        alert,
        event_id=event_id(chain.chain_id, state.value, chain.attempts, alert.alert_id, event.kind),
        at=now_ms,
        chain_id=chain.chain_id,
        dedup_key=event.dedup_key,
        state=state.value,
        error_type=classification.error_type if classification else chain.error_type,
        risk=classification.risk if classification else "",
        action=chain.action,
        attempt=chain.attempts,
        max_attempts=chain.max_attempts,
        due_at=due_at,
        first_seen_at=chain.first_seen_at,
        detail=detail,
    )


def _add(history: tuple[str, ...], entry: str) -> tuple[str, ...]:
    return (*history, entry)[-HISTORY_LIMIT:]
