"""When people are told about a chain, whom, and what became of each delivery.

A chain tells people **once**: the first transition that needs them (handed to people,
awaiting approval) opens one message per target (a Slack thread, a PagerDuty incident whose
``dedup_key`` is the chain id, a Teams card), and later transitions of the same chain update
it (``chat.update`` on the stored ``ts``, ``resolve`` with the same key). A resolution is told
only to targets that were told about the hand-off. Which targets hear about a chain is a
first-match routing table like the rule table (:class:`Route`).

The chains stage turns a step's audit rows into *notices* (:func:`notices_for`): one
:class:`ActionRequest` of action ``notify`` per transition, keyed by chain id on the
``notifications`` topic. A delivery that failed transiently goes back through the delay
tiers as a copy of the notice naming its one target (:func:`retry_notice`), so a channel
that is down holds nothing else up, and nothing sleeps. The notifier keeps per chain what
was delivered where (:class:`Told`), so a redelivered notice is not told twice.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from streams.policy import backoff
from streams.policy.ids import event_id
from streams.policy.model import (
    ActionRequest,
    Alert,
    Classification,
    Outcome,
    OutcomeState,
)
from streams.policy.replays import is_replayed

NOTIFY = "notify"  # the action of a notice (streams.policy.routing.NOTIFY)


class Transition(enum.StrEnum):
    """Chain transitions people hear about."""

    HANDED_TO_PEOPLE = "handed_to_people"  # manual, gave up, cost cap, invalid name, ...
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVAL_EXPIRED = "approval_expired"
    RESOLVED = "resolved"  # after a hand-off: the incident closes
    STORM = "storm"  # many failures on one scope: its actions are held (admission)


# the transitions that open a message (anything else only updates one)
OPENING = frozenset({Transition.HANDED_TO_PEOPLE, Transition.AWAITING_APPROVAL, Transition.STORM})


class Delivery(enum.StrEnum):
    """The outcome row of one delivery to one target."""

    NOTIFIED = "notified"
    NOTIFY_RETRYING = "notify_retrying"
    NOTIFY_FAILED = "notify_failed"  # permanently: recorded, the chain goes on without it


DELIVERY_STATES = frozenset(d.value for d in Delivery)
APPROVAL_REFUSED = "approval_refused"  # an approval link was tampered with, expired or reused
EXPIRED = "expired"  # an approval request nobody decided in time
# rows about telling people and their links, and the kill switch's pauses and resumes
# (streams/policy/pauses.py): not chain transitions (the chains view skips them)
# and the storm guard's storms (streams/policy/admission.py)
SIDE_STATES = DELIVERY_STATES | {APPROVAL_REFUSED, "paused", "resumed", "storm", "storm_over"}

EXPIRED_DETAIL = "expired: no decision within"

# audit-row state -> the transition it is
_BY_STATE: Mapping[str, Transition] = {
    OutcomeState.MANUAL.value: Transition.HANDED_TO_PEOPLE,
    OutcomeState.GAVE_UP.value: Transition.HANDED_TO_PEOPLE,
    OutcomeState.AWAITING_APPROVAL.value: Transition.AWAITING_APPROVAL,
    OutcomeState.RESOLVED.value: Transition.RESOLVED,
    "expired": Transition.APPROVAL_EXPIRED,
}


@dataclass(frozen=True)
class Route:
    """One row of the routing table: glob patterns (``*`` matches anything, ``adf-*``
    a prefix) on what a notice is about, and the targets that hear about it."""

    targets: tuple[str, ...]
    scope: str = "*"  # ADF factory name | Databricks workspace id
    source: str = "*"  # adf | databricks
    risk: str = "*"
    error_type: str = "*"
    transition: str = "*"


@dataclass(frozen=True)
class NotifyConfig:
    routes: tuple[Route, ...] = ()
    approval_ttl_s: int = 0  # an approval request expires this long after it was made
    retry_limit: int = 10  # deliveries tried per target and transition before giving up
    backoff_s: tuple[float, ...] = (5.0, 15.0, 30.0, 60.0, 120.0)


def targets_for(request: ActionRequest, routes: Sequence[Route]) -> tuple[str, ...]:
    """The targets of the first route that matches ``request``; none if no route does."""
    alert = request.alert
    facts = {
        "scope": alert.scope,
        "source": alert.source,
        "risk": request.classification.risk,
        "error_type": request.classification.error_type,
        "transition": request.step,
    }
    for route in routes:
        if all(fnmatch.fnmatchcase(value, getattr(route, name)) for name, value in facts.items()):
            return route.targets
    return ()


def notices_for(
    chain: Any, alert: Alert, classification: Classification | None, outcomes: Iterable[Outcome]
) -> tuple[ActionRequest, ...]:
    """The notices a chain step's audit rows call for. ``chain`` is the chain after the step
    (:class:`streams.policy.chains.Chain`). A failure a replay sent pages nobody."""
    if chain is None:
        return ()
    notices = []
    for row in outcomes:
        transition = _BY_STATE.get(row.state)
        if transition is None or row.chain_id != chain.chain_id:
            continue
        if row.detail.startswith(f"rejected {EXPIRED_DETAIL}"):
            transition = Transition.APPROVAL_EXPIRED  # the expiry closed it (rejected)
        if transition is Transition.HANDED_TO_PEOPLE and is_replayed(alert):
            continue
        notices.append(_notice(chain, alert, classification, row, transition))
    return tuple(notices)


def _notice(
    chain: Any,
    alert: Alert,
    classification: Classification | None,
    row: Outcome,
    transition: Transition,
) -> ActionRequest:
    kind = classification or Classification(
        row.error_type or chain.error_type, row.risk or "high", chain.action, 0, (), row.detail
    )
    return ActionRequest(
        action_id=f"{chain.chain_id}#{chain.attempts}:notify:{transition.value}",
        chain_id=chain.chain_id,
        dedup_key=row.dedup_key,
        action=NOTIFY,
        step=transition.value,
        attempt=chain.attempts,
        max_attempts=chain.max_attempts,
        due_at=row.at,
        alert=alert,
        classification=kind,
        reason=row.detail,
        first_seen_at=chain.first_seen_at,
        context={"chain_action": chain.action, "state": row.state},
        history=tuple(chain.history),
    )


@dataclass(frozen=True)
class Told:
    """What one chain's people were told, per target: the message to update
    (Slack ``channel``/``ts``; PagerDuty's key is the chain id) and the transitions
    delivered. Kept in the notifier's table, keyed by chain id."""

    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    updated_at: int = 0

    def delivered(self, target: str, transition: str) -> bool:
        return transition in self.targets.get(target, {}).get("delivered", ())

    def ref(self, target: str) -> Mapping[str, str]:
        return self.targets.get(target, {}).get("ref", {})

    @property
    def opened(self) -> tuple[str, ...]:
        """Targets some opening transition was delivered to."""
        return tuple(
            name
            for name, entry in self.targets.items()
            if OPENING.intersection(entry.get("delivered", ()))
        )

    def with_delivery(
        self, target: str, transition: str, ref: Mapping[str, str], now_ms: int
    ) -> Told:
        entry = dict(self.targets.get(target, {}))
        entry["delivered"] = [*entry.get("delivered", ()), transition]
        entry["ref"] = {**entry.get("ref", {}), **ref}
        return replace(self, targets={**self.targets, target: entry}, updated_at=now_ms)

    def with_failure(self, target: str, transition: str, why: str, now_ms: int) -> Told:
        entry = dict(self.targets.get(target, {}))
        entry["failed"] = {**entry.get("failed", {}), transition: why[:300]}
        return replace(self, targets={**self.targets, target: entry}, updated_at=now_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": {k: dict(v) for k, v in self.targets.items()},
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Told:
        if not data:
            return cls()
        return cls(targets=dict(data.get("targets") or {}), updated_at=data.get("updated_at", 0))


def due_targets(request: ActionRequest, told: Told, routes: Sequence[Route]) -> tuple[str, ...]:
    """Whom to deliver ``request`` to now: the one target a retry names, else the routed
    ones; never a target it was delivered to already (a redelivered notice), and a
    resolution or an expiry only to targets told about the hand-off."""
    named = request.context.get("target")
    candidates = (named,) if named else targets_for(request, routes)
    if Transition(request.step) not in OPENING:
        candidates = tuple(t for t in candidates if t in told.opened)
    return tuple(t for t in candidates if not told.delivered(t, request.step))


def retry_notice(
    request: ActionRequest,
    target: str,
    *,
    retry_after_s: float | None,
    now_ms: int,
    config: NotifyConfig,
) -> ActionRequest | None:
    """The same notice for ``target`` alone, due after the backoff (a Retry-After wins);
    None once ``config.retry_limit`` deliveries were tried."""
    tries = tries_of(request) + 1
    if tries >= config.retry_limit:
        return None
    delay_s = backoff.choose_delay(config.backoff_s, tries, retry_after_s)
    return replace(
        request,
        context={**request.context, "target": target, "tries": str(tries)},
        due_at=now_ms + max(1, int(delay_s * 1000)),
    )


def tries_of(request: ActionRequest) -> int:
    return int(request.context.get("tries", "0"))


def delivery_row(
    request: ActionRequest,
    target: str,
    kind: str,
    state: Delivery,
    detail: str,
    *,
    now_ms: int,
    due_at: int = 0,
) -> Outcome:
    """The audit row of one delivery: ``action`` names the target (``notify:<target>``),
    ``platform_status`` the transition, ``detail`` the channel kind and what happened."""
    tries = tries_of(request)
    return Outcome.about(
        request.alert,
        event_id=event_id(request.chain_id, NOTIFY, target, request.step, state.value, tries),
        at=now_ms,
        chain_id=request.chain_id,
        dedup_key=request.dedup_key,
        state=state.value,
        error_type=request.classification.error_type,
        risk=request.classification.risk,
        action=f"{NOTIFY}:{target}",
        attempt=tries + 1,
        due_at=due_at,
        first_seen_at=request.first_seen_at,
        platform_status=request.step,
        detail=f"{kind} {request.step}: {detail}"[:1000],
    )


# --- approval expiry ------------------------------------------------------------------


def approval_expires_s(request: ActionRequest, ttl_s: int) -> int:
    """When the approval a notice asks for expires (epoch s): its links and the expiry
    agree. The notice is due when the chain began to wait (its ``updated_at``)."""
    return request.due_at // 1000 + ttl_s


def awaiting_approvals(
    chains: Iterable[tuple[str, Mapping[str, Any] | None]], ttl_s: int
) -> dict[str, tuple[int, ActionRequest]]:
    """chain id -> (expiry in epoch ms, the pending request) of every chain in ``chains``
    (a chains table's items) that waits for a decision: what a restarted worker expires."""
    waiting = {}
    for chain_id, chain in chains:
        if chain and chain.get("state") == OutcomeState.AWAITING_APPROVAL.value:
            pending = chain.get("pending")
            if pending:
                expires_ms = (int(chain.get("updated_at", 0)) // 1000 + ttl_s) * 1000
                waiting[chain_id] = (expires_ms, ActionRequest.from_dict(pending))
    return waiting


def still_undecided(chain: Mapping[str, Any] | None, request: ActionRequest) -> bool:
    """Does the chain (as its table holds it) still wait on the approval ``request`` asked?"""
    return bool(
        chain
        and chain.get("state") == OutcomeState.AWAITING_APPROVAL.value
        and chain.get("attempts") == request.attempt
    )


def expired_row(request: ActionRequest, ttl_s: int, *, now_ms: int) -> Outcome:
    return Outcome.about(
        request.alert,
        event_id=event_id(request.chain_id, EXPIRED, request.attempt),
        at=now_ms,
        chain_id=request.chain_id,
        dedup_key=request.dedup_key,
        state=EXPIRED,
        error_type=request.classification.error_type,
        risk=request.classification.risk,
        action=request.context.get("chain_action", ""),
        attempt=request.attempt,
        max_attempts=request.max_attempts,
        first_seen_at=request.first_seen_at,
        detail=f"{EXPIRED_DETAIL} {ttl_s}s",
    )
