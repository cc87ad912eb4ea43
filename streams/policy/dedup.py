"""Act once per failure: dedup keys, chain ids and the per-run decision.

A *dedup key* names one failing run (ADF: factory + pipeline run id; Databricks: workspace +
job run id, plus the task key for task runs; clusters: workspace + cluster + termination
time). A *chain* spans the reruns that remediation creates: its id comes from an explicit link
(our own rerun announced itself), else the platform's own chain hint (ADF ``runGroupId``,
Databricks ``original_attempt_run_id``), else the failing run itself.

The dedup table holds one :class:`DedupEntry` per key; entries expire after a horizon so
the state stays bounded however many run ids pass.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from streams.policy.ids import event_id
from streams.policy.model import Alert, ClassifiedAlert, Kind, Outcome, OutcomeState, Signal, Source


def run_ref(alert: Alert) -> str:
    """The run attempt an alert is about. A Databricks repair reruns tasks inside the same job
    run, so the repair id is part of the reference: a failure after our repair is new."""
    repair_id = alert.details.get("repair_id", "")
    return f"{alert.run_id}#{repair_id}" if repair_id else alert.run_id


def dedup_key(alert: Alert) -> str:
    if alert.source == Source.ADF.value:
        return f"adf|{alert.scope}|{alert.run_id or _no_run(alert)}"
    if alert.kind in (Kind.CLUSTER.value, Kind.LIBRARY.value) and not alert.run_id:
        return f"dbx|{alert.scope}|cluster|{alert.cluster_id}|{alert.occurred_at}"
    if alert.kind == Kind.TASK_RUN.value and alert.sub_id:
        return f"dbx|{alert.scope}|{run_ref(alert)}|{alert.sub_id}"
    return f"dbx|{alert.scope}|{run_ref(alert)}"


def chain_hint(alert: Alert) -> str:
    """The chain the platform itself says this run belongs to ("" when it says nothing)."""
    if alert.chain_id:
        return alert.chain_id
    if not alert.group_id:
        return ""
    prefix = "adf" if alert.source == Source.ADF.value else "dbx"
    return f"{prefix}|{alert.scope}|{alert.group_id}"


def own_chain_id(alert: Alert) -> str:
    """The id of a chain this alert opens. Task failures open the chain of their job run, so
    a job-level and a task-level alert for the same run meet in one chain."""
    if alert.source == Source.ADF.value:
        return f"adf|{alert.scope}|{alert.run_id or _no_run(alert)}"
    if alert.kind in (Kind.CLUSTER.value, Kind.LIBRARY.value) and not alert.run_id:
        # one chain per cluster: repeated termination alerts join it while it is in flight,
        # and a later incident reopens it once it is resolved (see chains.py)
        return f"dbx|{alert.scope}|cluster|{alert.cluster_id}"
    return f"dbx|{alert.scope}|{alert.run_id}"


def _no_run(alert: Alert) -> str:
    """An ADF alert that names no run (a metric alert whose window held none) is its own
    incident: the alert instance's id names it, so its re-notifications stay duplicates."""
    return f"alert:{alert.alert_id}"


@dataclass(frozen=True)
class DedupEntry:
    chain_id: str
    failure_seen: bool = False  # a failure of this run has been passed on already
    success_seen: bool = False
    copies: int = 0  # duplicates suppressed
    first_seen_at: int = 0
    expires_at: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "failure_seen": self.failure_seen,
            "success_seen": self.success_seen,
            "copies": self.copies,
            "first_seen_at": self.first_seen_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DedupEntry:
        return cls(**data)


class Verdict(enum.StrEnum):
    NEW_FAILURE = "new_failure"  # pass to the chain as a failure
    DUPLICATE = "duplicate"  # suppress and record which chain it joined
    SUCCESS = "success"  # pass to the chain: it may close
    LINKED = "linked"  # remembered which chain this run id belongs to; nothing to pass on
    WAIT = "wait"  # the platform retries by itself: record only
    UNREMARKABLE = "unremarkable"  # a success no chain waits for, or one told already: no trace


@dataclass(frozen=True)
class DedupDecision:
    verdict: Verdict
    chain_id: str
    entry: DedupEntry
    reason: str = ""


def decide(
    entry: DedupEntry | None, alert: Alert, *, now_ms: int, horizon_ms: int
) -> DedupDecision:
    """What to do with ``alert`` given what the table knows about its run.

    Expired entries count as absent. The returned entry is what the table must hold next.
    """
    if entry is not None and entry.expires_at and entry.expires_at <= now_ms:
        entry = None
    chain_id = alert.chain_id or (entry.chain_id if entry else "") or chain_hint(alert)
    chain_id = chain_id or own_chain_id(alert)
    fresh = DedupEntry(chain_id=chain_id, first_seen_at=now_ms, expires_at=now_ms + horizon_ms)
    base = entry or fresh
    signal = alert.signal

    if signal == Signal.LINK.value:
        return DedupDecision(Verdict.LINKED, chain_id, replace(base, chain_id=chain_id))
    if signal == Signal.WAIT.value:
        return DedupDecision(Verdict.WAIT, chain_id, base, "platform retry pending")
    if signal == Signal.SUCCESS.value:
        # A success matters only to a chain. One of a run nobody alerted on, or a redelivered
        # one, leaves no row and no state: "duplicate" is said of failures only.
        hint = chain_hint(alert)
        unknown = entry is None and (not hint or hint == own_chain_id(alert))
        if unknown or base.success_seen:
            return DedupDecision(Verdict.UNREMARKABLE, chain_id, entry or fresh)
        return DedupDecision(Verdict.SUCCESS, base.chain_id, replace(base, success_seen=True))
    if base.failure_seen:
        return _duplicate(base, "failure of this run already acted on")
    if base.success_seen:
        return _duplicate(base, "run already succeeded")
    return DedupDecision(Verdict.NEW_FAILURE, base.chain_id, replace(base, failure_seen=True))


def _duplicate(entry: DedupEntry, reason: str) -> DedupDecision:
    kept = replace(entry, copies=entry.copies + 1)
    return DedupDecision(Verdict.DUPLICATE, entry.chain_id, kept, reason)


_ROW_STATE = {
    Verdict.NEW_FAILURE: OutcomeState.RECEIVED,
    Verdict.DUPLICATE: OutcomeState.DUPLICATE,
    Verdict.WAIT: OutcomeState.WAITING,
}


def outcome_for(
    decision: DedupDecision, record: ClassifiedAlert, key: str, *, now_ms: int
) -> Outcome | None:
    """The audit row for a dedup decision (links and successes are told by the chain)."""
    state = _ROW_STATE.get(decision.verdict)
    if state is None:
        return None
    alert = record.alert
    classification = record.classification
    return Outcome.about(
        alert,
        event_id=event_id(key, state.value, alert.alert_id, decision.entry.copies),
        at=now_ms,
        chain_id=decision.chain_id,
        dedup_key=key,
        state=state.value,
        error_type=classification.error_type if classification else "",
        risk=classification.risk if classification else "",
        action=classification.action if classification else "",
        first_seen_at=record.received_at,
        detail=decision.reason + _unmatched_message(record),
    )


UNMATCHED = "Unknown"  # the error type of the catch-all rule (streams/policy/rules.py)


def _unmatched_message(record: ClassifiedAlert) -> str:
    """An alert no rule matched keeps its message in the audit trail: ``pipemedic tune``
    proposes rules from the messages that recur."""
    classification = record.classification
    if classification is None or classification.error_type != UNMATCHED:
        return ""
    return f" | message: {record.alert.message[:500]}" if record.alert.message else ""
