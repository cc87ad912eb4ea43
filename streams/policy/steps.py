"""What follows a platform step: verify, retry the step, close, or hand over to people.

An executor runs one step (execute or verify) against a platform and reports a
:class:`StepReport`, or a platform error already reduced to its kind. These functions turn
that into effects; they never call anything. Transient platform errors retry the *same*
step through the delay tiers (honouring Retry-After) a bounded number of times; a failed
fix re-enters the chain as a new failure, so attempts keep counting.

Some fixes prepare the ground for the failed run rather than rerun it (more workers, a
missing table): when one of them worked, its follow-up (:data:`FOLLOW_UPS`, a repair of the
run) is scheduled as an action of its own, at once, and the chain resolves only when that
one does. The follow-up goes through every gate an action does (kill switch, breaker, cost).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from streams.policy import backoff
from streams.policy.ids import event_id
from streams.policy.model import (
    Action,
    ActionRequest,
    Alert,
    ChainEvent,
    ChainEventKind,
    ClassifiedAlert,
    Kind,
    Outcome,
    OutcomeState,
    Signal,
    Step,
)

# (action that worked, kind of the failed object) -> the action that then fixes the failure
FOLLOW_UPS: Mapping[tuple[str, str], str] = {
    (Action.SCALE_CLUSTER.value, Kind.JOB_RUN.value): Action.REPAIR_JOB.value,
    (Action.SCALE_CLUSTER.value, Kind.TASK_RUN.value): Action.REPAIR_JOB.value,
    (Action.CREATE_TABLE.value, Kind.JOB_RUN.value): Action.REPAIR_JOB.value,
    (Action.CREATE_TABLE.value, Kind.TASK_RUN.value): Action.REPAIR_JOB.value,
}
FOLLOWS = "follows"  # context key: the action a follow-up comes after


class Status(enum.StrEnum):
    STARTED = "started"  # the fix is under way (a new run, a repair, a cluster starting)
    PENDING = "pending"  # not finished yet: look again later
    SUCCEEDED = "succeeded"  # the fix worked (or the target is already healthy)
    FAILED = "failed"  # the fix ran and failed: the chain takes its next attempt
    WAITING = "waiting"  # a precondition is not met yet (upstream not done): check again later


@dataclass(frozen=True)
class StepReport:
    status: Status
    new_run_id: str = ""  # a new ADF run id, or the job run id of a Databricks repair
    repair_id: str = ""
    detail: str = ""
    platform_status: str = ""
    context: Mapping[str, str] | None = None  # carried into the next step (e.g. versions tried)


@dataclass(frozen=True)
class StepConfig:
    verify_poll_s: float = 30.0
    verify_max_polls: int = 40
    step_retry_limit: int = 5
    transient_backoff_s: tuple[float, ...] = (5.0, 15.0, 30.0, 60.0, 120.0)
    upstream_recheck_s: float = 60.0
    upstream_max_checks: int = 30
    # estimated compute cost of one executed action, by action (a rerun re-spends the run)
    action_cost_usd: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Effects:
    requests: tuple[ActionRequest, ...] = ()  # to route through tiers / action topics
    chain_events: tuple[ChainEvent, ...] = ()
    alerts: tuple[ClassifiedAlert, ...] = ()  # links of new run ids to the chain
    outcomes: tuple[Outcome, ...] = ()


def after_step(
    request: ActionRequest, report: StepReport, *, now_ms: int, config: StepConfig
) -> Effects:
    context = {**request.context, **(report.context or {})}
    if report.status is Status.STARTED:
        run_ref = _run_ref(report)
        verify = replace(
            request,
            step=Step.VERIFY.value,
            poll=0,
            context={
                **context,
                "run_ref": run_ref,
                "new_run_id": report.new_run_id,
                "repair_id": report.repair_id,
            },
            due_at=now_ms + int(config.verify_poll_s * 1000),
            action_id=_verify_id(request),
        )
        executed = _event(
            request, ChainEventKind.EXECUTED, now_ms, report.detail, new_run_id=run_ref
        )
        links = (
            (_link(request, report, now_ms),) if report.new_run_id and not report.repair_id else ()
        )
        cost = config.action_cost_usd.get(request.action, 0.0)
        row = replace(_row(request, OutcomeState.EXECUTED, now_ms, report), cost_usd=cost)
        return Effects(requests=(verify,), chain_events=(executed,), alerts=links, outcomes=(row,))
    if report.status is Status.SUCCEEDED:
        if request.action == Action.MANUAL.value:
            return Effects()  # people were told; the chain closed when it was handed to them
        then = FOLLOW_UPS.get((request.action, request.alert.kind))
        if then is not None and request.alert.run_id:
            return Effects(requests=(_follow_up(request, then, now_ms),))
        resolved = _event(request, ChainEventKind.RESOLVED, now_ms, report.detail or "verified")
        return Effects(chain_events=(resolved,))
    if report.status is Status.FAILED:
        return Effects(
            chain_events=(_reentry(request, report, now_ms),),
            outcomes=(_row(request, OutcomeState.FAILED, now_ms, report),),
        )
    if report.status is Status.PENDING:
        if request.poll + 1 >= config.verify_max_polls:
            why = f"no final state after {config.verify_max_polls} checks"
            return Effects(
                chain_events=(_event(request, ChainEventKind.ACTION_ERROR, now_ms, why),)
            )
        again = replace(
            request,
            poll=request.poll + 1,
            context=context,
            due_at=now_ms + int(config.verify_poll_s * 1000),
        )
        return Effects(requests=(again,))
    # WAITING: a precondition is not met yet; check again without spending an attempt
    checks = int(context.get("checks", "0")) + 1
    if checks >= config.upstream_max_checks:
        why = f"precondition still unmet after {checks} checks: {report.detail}"
        return Effects(chain_events=(_event(request, ChainEventKind.ACTION_ERROR, now_ms, why),))
    again = replace(
        request,
        context={**context, "checks": str(checks)},
        due_at=now_ms + int(config.upstream_recheck_s * 1000),
    )
    return Effects(
        requests=(again,), outcomes=(_row(request, OutcomeState.RETRYING, now_ms, report),)
    )


def after_error(
    request: ActionRequest,
    *,
    kind: str,
    retryable: bool,
    retry_after_s: float | None,
    detail: str,
    now_ms: int,
    config: StepConfig,
) -> Effects:
    """A platform call failed. Retry the same step later, or hand the chain to people."""
    tries = int(request.context.get("step_retries", "0")) + 1
    if not retryable or tries > config.step_retry_limit:
        why = f"{kind}: {detail}" if retryable is False else f"{kind} {tries - 1} times: {detail}"
        return Effects(chain_events=(_event(request, ChainEventKind.ACTION_ERROR, now_ms, why),))
    delay_s = backoff.choose_delay(config.transient_backoff_s, tries, retry_after_s)
    again = replace(
        request,
        context={**request.context, "step_retries": str(tries)},
        due_at=now_ms + int(delay_s * 1000),
    )
    row = Outcome(
        **{
            **_row(request, OutcomeState.RETRYING, now_ms, None).to_dict(),
            "event_id": event_id(request.action_id, "retrying", tries, request.poll),
            "detail": f"{kind}: {detail}; again in {delay_s:g}s",
            "due_at": again.due_at,
        }
    )
    return Effects(requests=(again,), outcomes=(row,))


def over_budget(request: ActionRequest, *, reason: str, now_ms: int) -> Effects:
    """Running the action would pass the daily cost cap: the chain goes to people, who
    decide whether it is worth the spend."""
    return Effects(chain_events=(_event(request, ChainEventKind.ACTION_ERROR, now_ms, reason),))


def defer(request: ActionRequest, *, wait_s: float, reason: str, now_ms: int) -> Effects:
    """Run the same step later without spending its retry budget (e.g. the target's
    circuit breaker is open: the platform's outage is not the chain's failure)."""
    deferrals = int(request.context.get("deferrals", "0")) + 1
    again = replace(
        request,
        context={**request.context, "deferrals": str(deferrals)},
        due_at=now_ms + max(1, int(wait_s * 1000)),
    )
    row = replace(
        _row(request, OutcomeState.RETRYING, now_ms, None),
        event_id=event_id(request.action_id, "deferred", deferrals, request.poll),
        detail=f"{reason}; again in {wait_s:.0f}s",
        due_at=again.due_at,
    )
    return Effects(requests=(again,), outcomes=(row,))


def _verify_id(request: ActionRequest) -> str:
    follows = request.context.get(FOLLOWS)
    base = f"{request.chain_id}#{request.attempt}:verify"
    return f"{base}:{request.action}" if follows else base


def _follow_up(request: ActionRequest, action: str, now_ms: int) -> ActionRequest:
    """The next action of a fix that worked, due now, its own execute step."""
    return replace(
        request,
        action_id=f"{request.chain_id}#{request.attempt}:{action}",
        action=action,
        step=Step.EXECUTE.value,
        poll=0,
        due_at=now_ms,
        tier="",
        hop_due_at=0,
        reason=f"after {request.action}",
        context={FOLLOWS: request.action},
    )


def _run_ref(report: StepReport) -> str:
    return f"{report.new_run_id}#{report.repair_id}" if report.repair_id else report.new_run_id


def _event(
    request: ActionRequest,
    kind: ChainEventKind,
    now_ms: int,
    detail: str,
    *,
    new_run_id: str = "",
    alert: Alert | None = None,
) -> ChainEvent:
    return ChainEvent(
        kind=kind.value,
        chain_id=request.chain_id,
        dedup_key=request.dedup_key,
        at=now_ms,
        alert=alert or request.alert,
        classification=request.classification,
        action_id=request.action_id,
        attempt=request.attempt,
        new_run_id=new_run_id,
        detail=detail,
        origin=request.origin,
        received_at=request.first_seen_at,
    )


def _rerun_alert(request: ActionRequest, report: StepReport, signal: Signal, now_ms: int) -> Alert:
    """The alert a rerun of ours would raise, so the platform's own alert for it dedups."""
    new_run = request.context.get("new_run_id", "") or report.new_run_id
    repair = request.context.get("repair_id", "") or report.repair_id
    details = dict(request.alert.details)
    details.pop("repair_id", None)
    if repair:
        details["repair_id"] = repair
    # what the next attempt must not repeat (e.g. library versions already tried)
    tried = (report.context or {}).get("tried_versions") or request.context.get("tried_versions")
    if tried:
        details["tried_versions"] = tried
    return replace(
        request.alert,
        alert_id=f"pipemedic:{request.chain_id}#{request.attempt}:{signal.value}",
        signal=signal.value,
        run_id=new_run if new_run and not repair else request.alert.run_id,
        chain_id=request.chain_id,
        message=report.detail or request.alert.message,
        occurred_at=now_ms,
        details=details,
    )


def _link(request: ActionRequest, report: StepReport, now_ms: int) -> ClassifiedAlert:
    alert = _rerun_alert(request, report, Signal.LINK, now_ms)
    return ClassifiedAlert(alert=alert, received_at=now_ms, origin=request.action_id)


def _reentry(request: ActionRequest, report: StepReport, now_ms: int) -> ChainEvent:
    alert = _rerun_alert(request, report, Signal.FAILURE, now_ms)
    return _event(request, ChainEventKind.FAILURE, now_ms, report.detail, alert=alert)


def _row(
    request: ActionRequest, state: OutcomeState, now_ms: int, report: StepReport | None
) -> Outcome:
    alert = request.alert
    return Outcome.about(
        alert,
        event_id=event_id(request.action_id, state.value, request.poll),
        at=now_ms,
        chain_id=request.chain_id,
        dedup_key=request.dedup_key,
        state=state.value,
        error_type=request.classification.error_type,
        risk=request.classification.risk,
        action=request.action,
        attempt=request.attempt,
        max_attempts=request.max_attempts,
        first_seen_at=request.first_seen_at,
        new_run_id=report.new_run_id if report else "",
        platform_status=report.platform_status if report else "",
        detail=report.detail if report else "",
    )
