"""Admission: whether an action may start now, decided in one place for the whole estate.

Every new platform action passes here once, before its backoff starts, on a single stream
partition (key :data:`ADMISSION_KEY`): whatever the number of workers, one of them owns the
counters, so the limits below hold exactly across workers. The counters live in a Faust
table (any mutable mapping here) whose changelog survives restarts.

* **Daily budget**: an action's estimated cost (``action_cost_usd``) is reserved when it is
  admitted. An action that would take the UTC day's reserved spend past the budget is handed
  to people. Nothing overshoots; an admitted action that never starts keeps its reservation
  (the budget errs on the safe side).
* **Caps** (the ``caps:`` table of the rules file): at most ``limit`` actions per ``per``
  (``target``: one pipeline or job; ``factory``: one factory or workspace) within
  ``window_s``. A capped action is deferred until the window has room, or handed to people
  (``then: manual``); its row names the cap, once.
* **Storm guard** (``storms:``): more than ``more_than`` distinct ``distinct`` values failing
  within ``within_s`` on one ``scope`` (a factory or workspace, an error type, a tag of the
  estate's targets such as ``tag:region``, or the whole ``estate``) is a storm. Its actions
  are held, not dropped, and one ``storm`` row lists the chains affected so far. When the
  failures in the window fall back to the threshold one held action goes first as a probe;
  if its chain does not fail again within ``probe_s`` the storm is over, otherwise it goes
  on and the next probe waits ``probe_s``. Held actions come back every ``recheck_s`` and, after a storm, are let through at no
  more than ``release_per_s``.

Pure: no I/O, no clock (``now_ms`` is a parameter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from streams.policy.budget import day_of
from streams.policy.ids import event_id
from streams.policy.limits import Cap, StormRule
from streams.policy.model import Action, ActionRequest, Outcome, Step
from streams.policy.notices import NOTIFY, Transition
from streams.policy.steps import Effects, defer, over_budget

ADMISSION_KEY = "estate"  # every item is keyed so: one partition, one owner of every counter
STATE = "admission"  # where a request stands, in its context
ADMITTED, HELD = "admitted", "held"
UNGATED = frozenset({Action.MANUAL.value})  # paging people is never held back
STORM = "storm"  # the audit row of a storm (not a chain transition)
STORM_OVER = "storm_over"
ADMISSION_STATES = frozenset({STORM, STORM_OVER})
AFFECTED_LISTED = 50  # chains named in a storm's row; the rest are counted


@dataclass(frozen=True)
class AdmissionPolicy:
    budget_usd: float = 0.0  # 0: no budget
    action_cost_usd: Mapping[str, float] = field(default_factory=dict)
    caps: tuple[Cap, ...] = ()
    storms: tuple[StormRule, ...] = ()
    recheck_s: float = 30.0  # a held action is looked at again this much later
    probe_s: float = 120.0  # a probe's chain that has not failed again by then: storm over
    release_per_s: float = 2.0  # held actions let through per second after a storm
    target_tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def needs_admission(request: ActionRequest) -> bool:
    """A new platform action, not yet admitted and not waiting for its next look."""
    return (
        request.step == Step.EXECUTE.value
        and request.action not in UNGATED
        and request.context.get(STATE, "") != ADMITTED
    )


def goes_to_admission_now(request: ActionRequest, now_ms: int) -> bool:
    """Fresh actions go at once (their backoff starts once admitted); held ones when due."""
    if not needs_admission(request):
        return False
    return request.context.get(STATE, "") != HELD or request.due_at <= now_ms


def target_of(request: ActionRequest) -> str:
    alert = request.alert
    return f"{alert.source}|{alert.scope}|{alert.pipeline or alert.kind}".lower()


def factory_of(request: ActionRequest) -> str:
    alert = request.alert
    return f"{alert.source}|{alert.scope}".lower()


class Store(Protocol):
    """What admission reads and writes of its table: a value by key, and a new one (the
    windows age out in place, so nothing is ever deleted). A dict will do."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...


class Admission:
    """Decides for one request at a time, reading and writing ``store`` (the table)."""

    def __init__(self, policy: AdmissionPolicy, store: Store) -> None:
        self.policy = policy
        self.store = store

    def decide(self, request: ActionRequest, now_ms: int) -> Effects:
        fresh = request.context.get(STATE, "") == ""
        seen = Effects()
        if fresh and request.reason == "backoff":  # a failure that counts: storms see it
            seen = self._count_failure(request, now_ms)
        over, held = self._storms(request, now_ms)
        seen = _merge(seen, over)
        if held is None:
            held = self._after_storm(request, now_ms) or self._capped(request, now_ms)
        if held is not None:
            return _merge(seen, held)
        cost = self.policy.action_cost_usd.get(request.action, 0.0)
        if self.policy.budget_usd > 0 and cost > 0:
            spent = self._spent(now_ms)
            if spent + cost > self.policy.budget_usd + 1e-9:
                why = (
                    f"daily cost cap: ${spent:.2f} of ${self.policy.budget_usd:.2f} spent "
                    f"today, this action would add ${cost:.2f}"
                )
                return _merge(seen, over_budget(request, reason=why, now_ms=now_ms))
            self.store[_budget_key(now_ms)] = {"day": day_of(now_ms), "usd": spent + cost}
        self._take_slots(request, now_ms)
        admitted = replace(request, context={**request.context, STATE: ADMITTED})
        return _merge(seen, Effects(requests=(admitted,)))

    # ---- budget ------------------------------------------------------------------------------

    def _spent(self, now_ms: int) -> float:
        entry = self.store.get(_budget_key(now_ms)) or {}
        return float(entry.get("usd", 0.0))

    def spent_usd(self, now_ms: int) -> float:
        return self._spent(now_ms)

    # ---- caps --------------------------------------------------------------------------------

    def _capped(self, request: ActionRequest, now_ms: int) -> Effects | None:
        for index, cap in enumerate(self.policy.caps):
            key = _cap_key(index, request, cap)
            times = _within(self.store.get(key), now_ms - cap.window_s * 1000)
            if len(times) < cap.limit:
                continue
            why = f"cap {cap.label()!r}: {len(times)} actions on this {cap.per} already"
            if cap.then == "manual":
                return over_budget(request, reason=why, now_ms=now_ms)
            free_at = times[0] + cap.window_s * 1000 + _spread_ms(request.action_id, 1000)
            wait_s = max(free_at - now_ms, 1000) / 1000
            return _hold(request, f"cap:{index}", why, wait_s, now_ms)
        return None

    def _take_slots(self, request: ActionRequest, now_ms: int) -> None:
        for index, cap in enumerate(self.policy.caps):
            key = _cap_key(index, request, cap)
            times = _within(self.store.get(key), now_ms - cap.window_s * 1000)
            self.store[key] = [*times, now_ms]

    # ---- storms ------------------------------------------------------------------------------

    def _scopes(self, request: ActionRequest) -> list[tuple[int, StormRule, str]]:
        found = []
        alert = request.alert
        for index, rule in enumerate(self.policy.storms):
            if rule.scope == "factory":
                value = factory_of(request)
            elif rule.scope == "error_type":
                value = request.classification.error_type if request.classification else ""
            elif rule.scope == "estate":
                value = "*"
            else:  # tag:<key>
                tags = self.policy.target_tags.get(alert.scope.lower(), {})
                value = tags.get(rule.scope.removeprefix("tag:"), "")
            if value:
                found.append((index, rule, value))
        return found

    def _count_failure(self, request: ActionRequest, now_ms: int) -> Effects:
        rows: list[Outcome] = []
        notices: list[ActionRequest] = []  # people are told once per storm
        for index, rule, value in self._scopes(request):
            key = f"storm|{index}|{value}"
            storm = dict(self.store.get(key) or {})
            since = now_ms - rule.within_s * 1000
            seen = [s for s in storm.get("seen", []) if s[0] >= since]
            distinct = target_of(request) if rule.distinct == "target" else factory_of(request)
            seen.append([now_ms, distinct, request.chain_id])
            storm["seen"] = seen
            count = len({s[1] for s in seen})
            if storm.get("state") == "probing" and request.chain_id == storm.get("probe"):
                # the probe's chain failed again: not over yet, and no new probe for a while
                storm.update(
                    state=STORM, probe="", next_probe_at=now_ms + self.policy.probe_s * 1000
                )
            elif count > rule.more_than and not storm.get("state"):
                storm.update(state=STORM, since=now_ms, probe="")
                chains = sorted({s[2] for s in seen})
                row = _storm_row(rule, value, chains, count, now_ms)
                rows.append(row)
                notices.append(_storm_notice(request, row))
            self.store[key] = storm
        return Effects(requests=tuple(notices), outcomes=tuple(rows))

    def _storms(self, request: ActionRequest, now_ms: int) -> tuple[Effects, Effects | None]:
        """The rows of storms this look ends, and the hold if a storm on one of the
        request's scopes holds it (unless it goes first, as the probe)."""
        over: list[Outcome] = []
        for index, rule, value in self._scopes(request):
            key = f"storm|{index}|{value}"
            storm = dict(self.store.get(key) or {})
            if not storm.get("state"):
                continue
            seen = [s for s in storm.get("seen", []) if s[0] >= now_ms - rule.within_s * 1000]
            calm = len({s[1] for s in seen}) <= rule.more_than
            probe_done = now_ms >= storm.get("probe_at", 0) + self.policy.probe_s * 1000
            if storm["state"] == "probing" and probe_done:
                over.append(_storm_over_row(rule, value, storm, now_ms))
                self.store[key] = {"seen": seen}
                continue
            probe_now = calm and now_ms >= storm.get("next_probe_at", 0)
            if storm["state"] == STORM and probe_now:  # this action goes first, as the probe
                storm.update(state="probing", probe=request.chain_id, probe_at=now_ms, seen=seen)
                self.store[key] = storm
                continue
            why = f"storm on {rule.scope} {value} ({rule.label()})"
            spread_ms = int(min(5.0, self.policy.recheck_s) * 1000)  # not all back at once
            wait_s = self.policy.recheck_s + _spread_ms(request.action_id, spread_ms) / 1000
            mark = f"storm:{index}:{value}:{storm.get('since', 0)}"
            return Effects(outcomes=tuple(over)), _hold(request, mark, why, wait_s, now_ms)
        return Effects(outcomes=tuple(over)), None

    def _after_storm(self, request: ActionRequest, now_ms: int) -> Effects | None:
        """Held actions come back at a bounded rate once their storm is over."""
        if request.context.get(STATE) != HELD:
            return None
        key = "release"
        times = _within(self.store.get(key), now_ms - 1000)
        if len(times) < max(1, int(self.policy.release_per_s)):
            self.store[key] = [*times, now_ms]
            return None
        wait_s = 1 + _spread_ms(request.action_id, 4000) / 1000
        return _hold(
            request, "release", "let through after a storm, a few at a time", wait_s, now_ms
        )


def _hold(request: ActionRequest, mark: str, why: str, wait_s: float, now_ms: int) -> Effects:
    """Look at ``request`` again ``wait_s`` later, without spending a retry; one row per
    request and reason (``mark``), none on the looks after."""
    effects = defer(request, wait_s=wait_s, reason=why, now_ms=now_ms)
    (again,) = effects.requests
    again = replace(again, context={**again.context, STATE: HELD, "held_by": mark})
    seen = request.context.get("held_by") == mark
    return replace(effects, requests=(again,), outcomes=() if seen else effects.outcomes)


def _storm_row(
    rule: StormRule, value: str, chains: Sequence[str], count: int, now_ms: int
) -> Outcome:
    listed = ", ".join(chains[:AFFECTED_LISTED])
    more = f" and {len(chains) - AFFECTED_LISTED} more" if len(chains) > AFFECTED_LISTED else ""
    detail = (
        f"storm on {rule.scope} {value}: {count} {rule.distinct}s failing "
        f"({rule.label()}); actions held, people to decide. Chains: {listed}{more}"
    )
    return _storm_outcome(STORM, rule, value, now_ms, detail)


def _storm_notice(request: ActionRequest, row: Outcome) -> ActionRequest:
    """What people are told of a storm, once (the notifier keys it by the storm)."""
    return replace(
        request,
        action_id=f"{row.dedup_key}@{row.at}:notify:{Transition.STORM.value}",
        chain_id=f"{row.dedup_key}@{row.at}",
        dedup_key=row.dedup_key,
        action=NOTIFY,
        step=Transition.STORM.value,
        attempt=0,
        due_at=row.at,
        reason=row.detail,
        context={"state": STORM},
    )


def _storm_over_row(rule: StormRule, value: str, storm: Mapping[str, Any], now_ms: int) -> Outcome:
    detail = (
        f"storm on {rule.scope} {value} over: the probe ({storm.get('probe')}) did not "
        f"fail again; held actions released at a bounded rate"
    )
    return _storm_outcome(STORM_OVER, rule, value, now_ms, detail)


def _storm_outcome(state: str, rule: StormRule, value: str, now_ms: int, detail: str) -> Outcome:
    """An audit row about a storm on one scope (not about a chain)."""
    return Outcome(
        event_id=event_id(state, rule.scope, value, now_ms),
        at=now_ms,
        chain_id="",
        dedup_key=f"storm|{rule.scope}|{value}",
        state=state,
        scope=value,
        detail=detail,
    )


def _within(times: Any, since_ms: int) -> list[int]:
    return [t for t in (times or []) if t >= since_ms]


def _cap_key(index: int, request: ActionRequest, cap: Cap) -> str:
    what = target_of(request) if cap.per == "target" else factory_of(request)
    return f"cap|{index}|{what}"


def _budget_key(now_ms: int) -> str:
    return f"budget|{day_of(now_ms)}"


def _spread_ms(action_id: str, span_ms: int) -> int:
    digest = hashlib.blake2b(action_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest) % max(span_ms, 1)


def _merge(*parts: Effects) -> Effects:
    return Effects(
        alerts=tuple(a for p in parts for a in p.alerts),
        chain_events=tuple(e for p in parts for e in p.chain_events),
        requests=tuple(r for p in parts for r in p.requests),
        outcomes=tuple(o for p in parts for o in p.outcomes),
    )
