"""The domain records every stage agrees on.

Plain frozen dataclasses, no Faust and no I/O: the policy modules decide on these, the
Faust wiring turns them into Avro (``schemas/*.avsc`` mirror these fields one to one) and
back. Strings default to ``""`` rather than ``None`` so the Avro schemas stay flat and a
missing fact is simply empty.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Source(enum.StrEnum):
    ADF = "adf"
    DATABRICKS = "databricks"


class Kind(enum.StrEnum):
    """What failed: decides which platform object an action targets."""

    PIPELINE_RUN = "pipeline_run"
    ACTIVITY_RUN = "activity_run"
    JOB_RUN = "job_run"
    TASK_RUN = "task_run"
    CLUSTER = "cluster"
    LIBRARY = "library"
    TRIGGER_RUN = "trigger_run"  # an ADF trigger that failed: it started no run to rerun


class Signal(enum.StrEnum):
    FAILURE = "failure"  # something failed and may need an action
    SUCCESS = "success"  # a run succeeded: closes the chain it belongs to
    LINK = "link"  # our own rerun started: its run id joins an existing chain
    ENRICH = "enrich"  # the alert lacks run or error facts: ask the platform first
    WAIT = "wait"  # the platform will retry by itself: record, do not act


class Action(enum.StrEnum):
    """One Kafka topic per action (``action-<value>``)."""

    RETRY_PIPELINE = "retry_pipeline"
    RESTART_CLUSTER = "restart_cluster"
    REPAIR_JOB = "repair_job"
    LIBRARY_FALLBACK = "library_fallback"
    UPSTREAM_CHECK = "upstream_check"
    SCALE_CLUSTER = "scale_cluster"
    CREATE_TABLE = "create_table"  # the estate's DDL for a missing table, then a repair
    MANUAL = "manual"


class Risk(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ChainState(enum.StrEnum):
    """Where a remediation chain stands. The last three are final."""

    SCHEDULED = "scheduled"  # an action is waiting in a delay tier or an action topic
    AWAITING_APPROVAL = "awaiting_approval"  # approval mode: a person must approve the action
    VERIFYING = "verifying"  # the action ran; waiting for the platform to say how it ended
    RESOLVED = "resolved"
    GAVE_UP = "gave_up"
    MANUAL = "manual"


FINAL_STATES = frozenset({ChainState.RESOLVED, ChainState.GAVE_UP, ChainState.MANUAL})


@dataclass(frozen=True)
class Alert:
    """One canonical failure (or success) fact, whatever shape it arrived in.

    ``run_id`` is the run a remediation acts on: the ADF pipeline run (also for activity
    failures) or the Databricks job run (the parent run for task failures). ``sub_id`` is the
    activity run id or task key. ``group_id`` carries the platform's own chain hint: the ADF
    ``runGroupId`` or the Databricks ``original_attempt_run_id``.
    """

    alert_id: str
    source: str
    kind: str
    signal: str = Signal.FAILURE.value
    scope: str = ""  # ADF factory name | Databricks workspace id
    run_id: str = ""
    sub_id: str = ""
    group_id: str = ""
    pipeline: str = ""  # ADF pipeline name | Databricks job name
    job_id: str = ""
    cluster_id: str = ""
    error_code: str = ""  # ADF errorCode | Databricks termination code | cluster event type
    failure_type: str = ""  # ADF UserError/SystemError | Databricks termination type
    message: str = ""
    library: str = ""  # e.g. "pandas==2.2.0"
    platform_retries_left: int = 0
    occurred_at: int = 0  # epoch ms, as the platform reported it
    chain_id: str = ""  # set when the alert is known to belong to a chain (reruns, re-entries)
    details: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Classification:
    """What the rule table says about a failure."""

    error_type: str
    risk: str
    action: str
    max_retries: int
    backoff_s: tuple[int, ...]
    reason: str  # the rule that matched, for the audit trail

    def to_dict(self) -> dict[str, Any]:
        data = _to_dict(self)
        data["backoff_s"] = list(self.backoff_s)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Classification:
        values = dict(data)
        values["backoff_s"] = tuple(values.get("backoff_s", ()))
        return _from_dict(cls, values)


class Step(enum.StrEnum):
    EXECUTE = "execute"  # call the platform
    VERIFY = "verify"  # ask the platform how the run/cluster we started ended


class OutcomeState(enum.StrEnum):
    """One ClickHouse row per state transition of a chain (the audit trail)."""

    RECEIVED = "received"
    DUPLICATE = "duplicate"  # suppressed: joined an existing run or chain
    WAITING = "waiting"  # the platform retries by itself; nothing to do yet
    SCHEDULED = "scheduled"  # an action is due at ``due_at``
    OBSERVED = "observed"  # observe-only mode: this is what would have been done
    AWAITING_APPROVAL = "awaiting_approval"  # approval mode: the action waits for a person
    EXECUTED = "executed"
    RETRYING = "retrying"  # the platform answered transiently; the same step is due again
    FAILED = "failed"  # the action's run/cluster ended badly
    RESOLVED = "resolved"
    GAVE_UP = "gave_up"
    MANUAL = "manual"
    DEAD_LETTER = "dead_letter"
    IGNORED = "ignored"  # about a factory or workspace outside the estate: nothing was opened
    INGESTED = "ingested"  # what ingest saw in a window, per shape (streams.policy.tally)


@dataclass(frozen=True)
class ActionRequest:
    """A remediation step travelling through delay tiers and action topics.

    ``action_id`` is the idempotency key of the step: the same request delivered twice must
    not start a second run. Everything a later stage needs travels in the record (attempt,
    due time, origin, reason, history), so no stage has to look anything up.
    """

    action_id: str
    chain_id: str
    dedup_key: str
    action: str
    step: str
    attempt: int
    max_attempts: int
    due_at: int  # epoch ms
    alert: Alert
    classification: Classification
    tier: str = ""  # the delay tier it waits in, e.g. "30s"
    hop_due_at: int = 0  # epoch ms it leaves that tier (a long wait hops through several)
    poll: int = 0  # verification polls so far
    origin: str = ""  # topic/partition/offset of the alert that opened the chain
    reason: str = ""
    first_seen_at: int = 0  # epoch ms the chain opened
    context: Mapping[str, str] = field(default_factory=dict)
    history: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = _to_dict(self)
        data["alert"] = self.alert.to_dict()
        data["classification"] = self.classification.to_dict()
        data["history"] = list(self.history)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionRequest:
        values = dict(data)
        values["alert"] = Alert.from_dict(values["alert"])
        values["classification"] = Classification.from_dict(values["classification"])
        values["history"] = tuple(values.get("history", ()))
        return _from_dict(cls, values)


@dataclass(frozen=True)
class Outcome:
    """One row of the audit trail, as stored in ClickHouse table ``outcomes``.

    ``event_id`` is derived from the transition itself, so a replayed record collapses into
    the same row (ReplacingMergeTree) instead of counting twice.
    """

    event_id: str
    at: int  # epoch ms
    chain_id: str
    dedup_key: str
    state: str
    source: str = ""
    scope: str = ""
    pipeline: str = ""
    run_id: str = ""
    alert_id: str = ""
    error_type: str = ""
    risk: str = ""
    action: str = ""
    attempt: int = 0
    max_attempts: int = 0
    due_at: int = 0
    first_seen_at: int = 0
    new_run_id: str = ""
    platform_status: str = ""
    cost_usd: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def about(cls, alert: Alert, **fields: Any) -> Outcome:
        """A row about ``alert``: where it came from and what it names are the alert's own;
        ``fields`` give the rest (event id, time, chain, state, ...)."""
        return cls(
            source=alert.source,
            scope=alert.scope,
            pipeline=alert.pipeline,
            run_id=alert.run_id,
            alert_id=alert.alert_id,
            **fields,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ClassifiedAlert:
    """An alert after normalise + classify, keyed by its dedup key on ``alerts-classified``."""

    alert: Alert
    received_at: int  # epoch ms pipemedic first saw it
    origin: str = ""  # topic/partition/offset it came from
    classification: Classification | None = None  # None for success and link signals

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert.to_dict(),
            "received_at": self.received_at,
            "origin": self.origin,
            "classification": self.classification.to_dict() if self.classification else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassifiedAlert:
        cls_data = data.get("classification")
        return cls(
            alert=Alert.from_dict(data["alert"]),
            received_at=data["received_at"],
            origin=data.get("origin", ""),
            classification=Classification.from_dict(cls_data) if cls_data else None,
        )


class ChainEventKind(enum.StrEnum):
    FAILURE = "failure"  # a new (not duplicate) failure for the chain
    SUCCESS = "success"  # the platform reported a run of the chain succeeded
    EXECUTED = "executed"  # our action ran; ``new_run_id`` is what it started
    RESOLVED = "resolved"  # verification saw the fix work
    ACTION_ERROR = "action_error"  # the action cannot be carried out; a human must look
    APPROVED = "approved"  # a person approved the pending action (approval mode)
    REJECTED = "rejected"  # a person rejected it: the chain is theirs


@dataclass(frozen=True)
class ChainEvent:
    """Everything that moves a chain, keyed by ``chain_id`` on ``chain-events``."""

    kind: str
    chain_id: str
    dedup_key: str
    at: int  # epoch ms
    alert: Alert
    classification: Classification | None = None
    action_id: str = ""
    attempt: int = 0
    new_run_id: str = ""
    detail: str = ""
    origin: str = ""
    received_at: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = _to_dict(self)
        data["alert"] = self.alert.to_dict()
        data["classification"] = self.classification.to_dict() if self.classification else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChainEvent:
        values = dict(data)
        values["alert"] = Alert.from_dict(values["alert"])
        cls_data = values.get("classification")
        values["classification"] = Classification.from_dict(cls_data) if cls_data else None
        return _from_dict(cls, values)


@dataclass(frozen=True)
class Header:
    """One Kafka record header, as the message carried it."""

    key: str
    value: bytes


@dataclass(frozen=True)
class DeadLetter:
    """A message pipemedic could not use, kept with the reason instead of being dropped.

    Where it came from (topic, partition, offset) and what it was (key, headers, payload)
    are kept whole, so a redrive (``pipemedic replay`` of a dead-letter capture) sends the
    same record back to the same topic once the cause is fixed."""

    reason: str  # short machine-readable reason, e.g. "not_json"
    error: str  # the human-readable error
    topic: str
    partition: int
    offset: int
    at: int  # epoch ms
    payload: bytes
    key: bytes | None = None
    headers: tuple[Header, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = _to_dict(self)
        data["headers"] = [{"key": h.key, "value": h.value} for h in self.headers]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetter:
        values = dict(data)
        values["headers"] = tuple(Header(h["key"], h["value"]) for h in data.get("headers") or ())
        return _from_dict(cls, values)


@dataclass(frozen=True)
class _Shape:
    """What the generic conversions need to know about one record class, computed once:
    ``dataclasses.fields()`` and a frozen ``__init__`` cost more than the copying itself."""

    names: frozenset[str]
    mappings: tuple[str, ...]  # fields holding a mapping: copied into a plain dict
    defaults: tuple[tuple[str, Any], ...]  # plain defaults
    factories: tuple[tuple[str, Any], ...]  # default factories (a fresh value per record)


@functools.cache
def _shape(cls: type) -> _Shape:
    fields = dataclasses.fields(cls)
    missing = dataclasses.MISSING
    return _Shape(
        names=frozenset(f.name for f in fields),
        mappings=tuple(f.name for f in fields if str(f.type).startswith(("Mapping", "dict"))),
        defaults=tuple((f.name, f.default) for f in fields if f.default is not missing),
        factories=tuple(
            (f.name, f.default_factory) for f in fields if f.default_factory is not missing
        ),
    )


def _to_dict(obj: Any) -> dict[str, Any]:
    shape = _shape(type(obj))
    data = dict(obj.__dict__)  # a frozen dataclass without slots keeps its fields there
    for name in shape.mappings:
        if data[name] is not None:
            data[name] = dict(data[name])
    return data


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """``cls(**data)`` without unknown keys, built the way ``__init__`` would (these classes
    have no ``__post_init__``), minus its per-field ``object.__setattr__`` calls."""
    shape = _shape(cls)
    values = dict(shape.defaults)
    for name, factory in shape.factories:
        values[name] = factory()
    if shape.names.issuperset(data):
        values.update(data)
    else:
        values.update((k, v) for k, v in data.items() if k in shape.names)
    if len(values) != len(shape.names):  # a required field is missing: let __init__ say so
        return cls(**values)
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


@dataclass(frozen=True)
class Pause:
    """The kill switch, one record per scope on the ``control`` topic (keyed by scope, so a
    compacted topic keeps the latest word on each). ``paused`` false is the resume."""

    scope: str  # "*" (everything) or a target: factory name / workspace id, shell pattern
    paused: bool
    by: str
    reason: str
    at: int  # epoch ms

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pause:
        return _from_dict(cls, data)
