"""ADF facts from diagnostic logs on Event Hubs and from queryPipelineRuns results.

Decisions (see platforms.md sections 0, 1b and 1c):

* Only PipelineRuns/ActivityRuns records count (TriggerRuns and the rest: skip
  ``category_ignored``). InProgress/Queued and heartbeats (``end`` = 1601-01-01) give
  nothing; Cancelled gives nothing (a person chose it); an activity success gives nothing
  (there are many, and only a pipeline-level success closes a chain); a pipeline success is
  a SUCCESS.
* ``properties.Error`` is an object or the same object JSON-encoded as a string.
* A failed record with an error message is a FAILURE, without one it is ENRICH.
* An activity failure is WAIT when its record carries ADF's own retry policy
  (``properties.Policy.retry``, or ``policy.retry``) and ``retryAttempt`` (null on the first
  attempt) shows attempts left: ADF retries by itself. Without those facts it is a failure;
  the pipeline-level failure record arrives too and dedup collapses the two by run id.
* The factory (scope) comes from ``resourceId``, lower-cased: see :func:`parse_factory`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from streams.policy.model import Alert, Kind, Signal, Source
from streams.policy.normalize_base import (
    HEARTBEAT_PREFIX,
    NormalizeError,
    alert_id,
    collect,
    compact,
    first_time,
    ident,
    integer,
    mapping,
    message,
    parse_factory,
    required_ident,
    sequence,
    text,
)

ADF = Source.ADF.value
RUN_CATEGORIES = frozenset({"PipelineRuns", "ActivityRuns"})
TRIGGER_RUNS = "TriggerRuns"
IN_PROGRESS = frozenset({"InProgress", "Queued", "Canceling", "Cancelling"})
CANCELLED = frozenset({"Cancelled", "Canceled"})


def diagnostic_records(
    payload: Mapping[str, Any], received_at_ms: int, skips: list[str]
) -> list[Alert]:
    records = sequence(payload.get("records"), "records")
    if not records:
        skips.append("empty_batch")
        return []
    return collect(records, lambda record, sk: _record(record, received_at_ms, sk), skips)


def _status(record: Mapping[str, Any]) -> str:
    status = record.get("status")
    if isinstance(status, str) and status:
        return status
    operation = record.get("operationName")  # "<pipeline> - Failed"
    if isinstance(operation, str) and " - " in operation:
        return operation.rsplit(" - ", 1)[1]
    return ""


def _error(value: Any) -> Mapping[str, Any]:
    """``properties.Error``: an object, or the same object JSON-encoded as a string."""
    if isinstance(value, str):
        if not value or value == "null":
            return {}
        if len(value) > 65536 or value[0] != "{":
            return {"message": value}
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {"message": value}
    return mapping(value, "Error")


def _record(record: Any, received_at_ms: int, skips: list[str]) -> Alert | None:
    if not isinstance(record, Mapping):
        raise NormalizeError("wrong_type:record")
    category = record.get("category")
    if category == TRIGGER_RUNS:
        return _trigger_run(record, received_at_ms, skips)
    if not isinstance(category, str) or category not in RUN_CATEGORIES:
        skips.append("category_ignored")
        return None
    status = _status(record)
    end = record.get("end")
    if status in IN_PROGRESS or (
        not status and isinstance(end, str) and end.startswith(HEARTBEAT_PREFIX)
    ):
        skips.append("in_progress")
        return None
    activity_level = category == "ActivityRuns"
    if status == "Succeeded" and activity_level:
        skips.append("activity_succeeded")
        return None
    if status in CANCELLED:
        skips.append("cancelled")
        return None
    if status not in ("Failed", "Succeeded"):
        skips.append("status_ignored")
        return None

    props = mapping(record.get("properties"), "properties")
    run_field = "pipelineRunId" if activity_level else "runId"
    run_id = required_ident(record.get(run_field), run_field, "missing_run_id")
    subscription, group, factory = parse_factory(record.get("resourceId")) or ("", "", "")
    ended = end if isinstance(end, str) and not end.startswith(HEARTBEAT_PREFIX) else None
    occurred, raw_time = first_time(received_at_ms, ended, record.get("time"))
    group_id = ident(
        record.get("runGroupId") or record.get("groupId") or props.get("RunGroupId"), "runGroupId"
    )
    pipeline = text(record.get("pipelineName"), "pipelineName")
    common = {
        "source": ADF,
        "scope": factory,
        "run_id": run_id,
        "group_id": group_id,
        "pipeline": pipeline,
        "occurred_at": occurred,
    }
    if status == "Succeeded":
        if not group_id or group_id == run_id:
            # not a rerun of anything: no chain can be waiting for it (a chain's own run stays
            # failed; its reruns carry the group of the run they rerun)
            skips.append("succeeded_unchained")
            return None
        return Alert(
            alert_id=alert_id(ADF, "success", factory, run_id, raw_time),
            kind=Kind.PIPELINE_RUN.value,
            signal=Signal.SUCCESS.value,
            details={"shape": "adf_diagnostic_log", "category": category},
            **common,
        )

    error = _error(props.get("Error", props.get("error")))
    error_code = text(error.get("errorCode", error.get("ErrorCode")), "errorCode")
    failure_type = text(error.get("failureType") or record.get("failureType"), "failureType")
    note = message(error.get("message", error.get("Message")), "Error.message")
    sub_id = ident(record.get("activityRunId"), "activityRunId") if activity_level else ""
    attempt = integer(record.get("retryAttempt", props.get("retryAttempt")))
    policy = mapping(props.get("Policy") or props.get("policy") or record.get("policy"), "policy")
    retry_max = integer(policy.get("retry"))
    retries_left = max(0, retry_max - (attempt or 0)) if retry_max and retry_max > 0 else 0
    signal = Signal.WAIT if retries_left else Signal.FAILURE if note else Signal.ENRICH
    details = {
        "shape": "adf_diagnostic_log",
        "category": category,
        "code_source": "adf_error" if error_code else "",
        "subscription_id": subscription,
        "resource_group": group,
        "activity_name": text(record.get("activityName"), "activityName") if activity_level else "",
        "activity_type": text(
            record.get("activityType") or props.get("ActivityType"), "activityType"
        ),
        "error_target": text(error.get("target"), "Error.target"),
        "retry_attempt": "" if attempt is None else str(attempt),
        "retry_max": "" if retry_max is None else str(retry_max),
    }
    return Alert(
        alert_id=alert_id(ADF, signal.value, factory, run_id, sub_id, error_code, raw_time),
        kind=(Kind.ACTIVITY_RUN if activity_level else Kind.PIPELINE_RUN).value,
        signal=signal.value,
        sub_id=sub_id,
        error_code=error_code,
        failure_type=failure_type,
        message=note,
        platform_retries_left=retries_left,
        details=compact(details),
        **common,
    )


def _trigger_run(record: Mapping[str, Any], received_at_ms: int, skips: list[str]) -> Alert | None:
    """A trigger run: nothing to do unless it failed. A failed one started no pipeline run, so
    there is no run to rerun: it is an alert of its own (kind ``trigger_run``, keyed by the
    trigger run), which the rule table hands to people."""
    status = _status(record)
    if status != "Failed":
        skips.append("trigger_not_failed")
        return None
    trigger_run = required_ident(record.get("triggerId"), "triggerId", "missing_trigger_id")
    _subscription, _group, factory = parse_factory(record.get("resourceId")) or ("", "", "")
    occurred, raw_time = first_time(received_at_ms, record.get("time"), record.get("start"))
    props = mapping(record.get("properties"), "properties")
    error = _error(props.get("Error", props.get("error")))
    name = text(record.get("triggerName"), "triggerName")
    said = message(error.get("message", error.get("Message")), "Error.message")
    return Alert(
        alert_id=alert_id(ADF, "trigger_failed", factory, trigger_run, raw_time),
        source=ADF,
        kind=Kind.TRIGGER_RUN.value,
        scope=factory,
        signal=Signal.FAILURE.value,
        error_code=text(error.get("errorCode", error.get("ErrorCode")), "errorCode"),
        message=said or f"trigger {name or trigger_run} failed",
        occurred_at=occurred,
        details=compact(
            {
                "shape": "adf_diagnostic_log",
                "category": TRIGGER_RUNS,
                "trigger_name": name,
                "trigger_run_id": trigger_run,
                "trigger_type": text(record.get("triggerType"), "triggerType"),
            }
        ),
    )


# ---------------------------------------------------------------- enrichment


_TARGET = re.compile(r"Operation on target (.{1,200}?) failed")


def adf_runs(
    metric: Alert,
    runs: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    received_at_ms: int,
    skips: list[str],
) -> list[Alert]:
    """queryPipelineRuns (Status=Failed, LatestOnly) results for a metric/ENRICH alert.

    One FAILURE per failed run that is the latest of its group; the message is the run's
    top error text ("Operation on target X failed: ..."), which carries the connector code.
    Runs of another pipeline (or another run) than the alert names are skipped; for the run
    the alert named (``pipelineruns/{runId}`` passed as a one-element list) its error code,
    activity run id and kind are kept.
    """
    if isinstance(runs, Mapping):  # the raw response body {"value": [...]}
        runs = sequence(runs.get("value"), "value")
    if isinstance(runs, str | bytes) or not isinstance(runs, Sequence):
        raise NormalizeError("wrong_type:runs")

    def build(run: Any, _skips: list[str]) -> Alert | None:
        if not isinstance(run, Mapping):
            raise NormalizeError("wrong_type:run")
        pipeline = text(run.get("pipelineName"), "pipelineName")
        if run.get("status") != "Failed" or run.get("isLatest") is False:
            _skips.append("run_not_failed_latest")
            return None
        if metric.pipeline and pipeline and pipeline != metric.pipeline:
            _skips.append("other_pipeline")
            return None
        run_id = required_ident(run.get("runId"), "runId", "missing_run_id")
        if metric.run_id and run_id != metric.run_id:
            _skips.append("other_run")
            return None
        same_run = run_id == metric.run_id  # the alert named this run: keep its activity facts
        note = message(run.get("message"), "message")
        target = _TARGET.search(note)
        occurred, raw_time = first_time(received_at_ms, run.get("runEnd"), run.get("lastUpdated"))
        activity = metric.details.get("activity_name", "") if same_run else ""
        details = {
            **{
                k: v
                for k, v in metric.details.items()
                if k in ("subscription_id", "resource_group")
            },
            "shape": "adf_pipeline_runs",
            "enriched_from": metric.alert_id,
            "code_source": "adf_error" if same_run and metric.error_code else "",
            "activity_name": target.group(1) if target else activity,
        }
        return Alert(
            alert_id=alert_id(ADF, "run", metric.scope, run_id, raw_time),
            source=ADF,
            kind=metric.kind if same_run else Kind.PIPELINE_RUN.value,
            scope=metric.scope,
            run_id=run_id,
            sub_id=metric.sub_id if same_run else "",
            group_id=ident(run.get("runGroupId"), "runGroupId")
            or (metric.group_id if same_run else ""),
            pipeline=pipeline or metric.pipeline,
            error_code=metric.error_code if same_run else "",
            failure_type=metric.failure_type,
            message=note,
            occurred_at=occurred,
            details=compact(details),
        )

    if not runs:
        return []
    return collect(runs, build, skips)
