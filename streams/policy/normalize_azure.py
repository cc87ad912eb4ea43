"""ADF facts from Azure Monitor common-schema alerts (log, legacy log and metric alerts).

Decisions (see platforms.md sections 0 and 1a):

* ``monitorCondition: Resolved`` is not a failure: nothing comes out (skip ``resolved``).
* A fact set with a run id and an error message is a FAILURE. Without a run id (metric
  alerts always; log alerts not split by RunId) or without a message (a bare ``2200`` says
  nothing: the connector code lives in the message), the alert is ENRICH: the agent asks
  ``pipelineruns/{runId}`` or ``queryPipelineRuns`` over the window in ``details`` and
  hands the runs to :func:`streams.policy.normalize_adf.adf_runs`, which keeps the alert's
  error code.
* Facts come from ``condition.allOf[].dimensions`` (Log Alerts V2), ``SearchResults`` rows
  (legacy log alerts, one alert per row) or ``alertContext.properties`` (custom properties;
  the matrix doc's simple shape). Names are matched case- and underscore-insensitively.
* The factory comes from an ARM id in the facts (``_ResourceId``) or in
  ``alertTargetIDs``/``configurationItems`` -- a log alert's target is usually the Log
  Analytics workspace, not the factory. It is lower-cased: see :func:`parse_factory`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from streams.policy.model import Alert, Kind, Signal, Source
from streams.policy.normalize_base import (
    NormalizeError,
    alert_id,
    collect,
    compact,
    first_time,
    ident,
    mapping,
    message,
    parse_factory,
    sequence,
    text,
    time_ms,
    unique,
)

ADF = Source.ADF.value
COMMON_SCHEMA = "azureMonitorCommonAlertSchema"
FAILED_RUN_METRICS = frozenset({"PipelineFailedRuns", "ActivityFailedRuns"})

# Dimension / column / property names, folded (lower case, no "_", " " or "-"), to facts.
_FACT_NAMES = {
    "runid": "run_id",
    "pipelinerunid": "run_id",
    "pipelinename": "pipeline",
    "errorcode": "error_code",
    "failuretype": "failure_type",
    "activityname": "activity_name",
    "activitytype": "activity_type",
    "errormessage": "message",
    "activityrunid": "activity_run_id",
    "resourceid": "resource_id",
    "rungroupid": "group_id",
    "groupid": "group_id",
    "factoryname": "factory",
    "datafactoryname": "factory",
    "status": "status",
    "timegenerated": "time",
    "end": "time",
}
_FOLD = str.maketrans("", "", " _-")


def _fold(name: Any) -> str:
    return name.lower().translate(_FOLD) if isinstance(name, str) and len(name) < 100 else ""


def _facts(pairs: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, value in pairs:
        key = _FACT_NAMES.get(_fold(name))
        if key and key not in facts and value not in (None, ""):
            facts[key] = value
    return facts


def _dimension_pairs(dimensions: Any) -> list[tuple[Any, Any]]:
    return [
        (entry.get("name"), entry.get("value"))
        for entry in sequence(dimensions, "dimensions")
        if isinstance(entry, Mapping)
    ]


def _factory(facts: Mapping[str, Any], essentials: Mapping[str, Any]) -> tuple[str, str, str]:
    candidates = [facts.get("resource_id")]
    candidates.extend(sequence(essentials.get("alertTargetIDs"), "alertTargetIDs"))
    candidates.extend(sequence(essentials.get("configurationItems"), "configurationItems"))
    for candidate in candidates:
        parsed = parse_factory(candidate)
        if parsed is not None:
            return parsed
    return "", "", text(facts.get("factory"), "factory").lower()


_DURATION = re.compile(r"PT(?:(\d{1,4})H)?(?:(\d{1,5})M)?(?:(\d{1,6})S)?")


def _window(start: Any, end: Any, size: Any, fired: Any) -> dict[str, str]:
    """The failure window for queryPipelineRuns; derived from windowSize if not given."""
    end_ms = time_ms(end) or time_ms(fired)
    start_ms = time_ms(start)
    if start_ms is None and end_ms is not None and isinstance(size, str):
        found = _DURATION.fullmatch(size)
        if found and any(found.groups()):
            hours, minutes, seconds = (int(g or 0) for g in found.groups())
            start_ms = end_ms - (hours * 3600 + minutes * 60 + seconds) * 1000
    window = {}
    if start_ms is not None:
        window["window_start_ms"] = str(start_ms)
    if end_ms is not None:
        window["window_end_ms"] = str(end_ms)
    return window


# ---------------------------------------------------------------- common alert schema


def common_alert(payload: Mapping[str, Any], received_at_ms: int, skips: list[str]) -> list[Alert]:
    data = mapping(payload.get("data"), "data")
    essentials = mapping(data.get("essentials"), "essentials")
    context = mapping(data.get("alertContext"), "alertContext")
    if not context:
        raise NormalizeError("unknown_shape", "no alertContext")
    if text(essentials.get("monitorCondition"), "monitorCondition").lower() == "resolved":
        skips.append("resolved")
        return []
    condition = mapping(context.get("condition"), "condition")
    all_of = sequence(condition.get("allOf"), "allOf")
    if "SearchResults" in context:
        return _legacy_log_alert(context, essentials, received_at_ms, skips)
    if context.get("conditionType") == "LogQueryCriteria":
        return _log_alert(context, condition, all_of, essentials, received_at_ms, skips)
    if any(isinstance(c, Mapping) and "metricName" in c for c in all_of):
        return _metric_alert(condition, all_of, essentials, received_at_ms, skips)
    properties = mapping(context.get("properties"), "properties")
    facts = _facts(properties.items())
    if facts:  # the matrix doc's simple shape: alertContext.properties.PipelineRunId/...
        window = _window(None, None, None, essentials.get("firedDateTime"))
        alert = _run_alert(facts, essentials, "azure_simple_alert", window, received_at_ms, skips)
        return [alert] if alert else []
    raise NormalizeError("unknown_shape", "alertContext")


def _log_alert(context, condition, all_of, essentials, received_at_ms, skips) -> list[Alert]:
    custom = mapping(context.get("properties"), "properties")
    window = _window(
        condition.get("windowStartTime"),
        condition.get("windowEndTime"),
        condition.get("windowSize"),
        essentials.get("firedDateTime"),
    )
    entries = [mapping(c, "allOf[]") for c in all_of] or [{}]

    def build(entry: Mapping[str, Any], _skips: list[str]) -> Alert | None:
        facts = _facts(_dimension_pairs(entry.get("dimensions")) + list(custom.items()))
        return _run_alert(facts, essentials, "azure_log_alert", window, received_at_ms, _skips)

    return unique(collect(entries, build, skips))


def _legacy_log_alert(context, essentials, received_at_ms, skips) -> list[Alert]:
    results = mapping(context.get("SearchResults"), "SearchResults")
    window = _window(
        context.get("SearchIntervalStartTimeUtc"),
        context.get("SearchIntervalEndtimeUtc"),
        None,
        essentials.get("firedDateTime"),
    )
    rows: list[dict[str, Any]] = []
    for table in sequence(results.get("tables"), "tables"):
        table = mapping(table, "tables[]")
        names = [
            mapping(c, "columns[]").get("name") for c in sequence(table.get("columns"), "columns")
        ]
        for row in sequence(table.get("rows"), "rows"):
            rows.append(_facts(zip(names, sequence(row, "rows[]"), strict=False)))
    if not rows:
        alert = _run_alert({}, essentials, "azure_log_alert_legacy", window, received_at_ms, skips)
        return [alert] if alert else []

    def build(facts: dict[str, Any], _skips: list[str]) -> Alert | None:
        return _run_alert(
            facts, essentials, "azure_log_alert_legacy", window, received_at_ms, _skips
        )

    return unique(collect(rows, build, skips))


def _run_alert(
    facts: Mapping[str, Any],
    essentials: Mapping[str, Any],
    shape: str,
    window: Mapping[str, str],
    received_at_ms: int,
    skips: list[str],
) -> Alert | None:
    """One alert from the facts of a log-alert dimension set, a result row or properties."""
    status = text(facts.get("status"), "Status")
    if status and status != "Failed":
        skips.append("status_ignored")
        return None
    subscription, group, factory = _factory(facts, essentials)
    run_id = ident(facts.get("run_id"), "RunId")
    pipeline = text(facts.get("pipeline"), "PipelineName")
    activity = text(facts.get("activity_name"), "ActivityName")
    sub_id = ident(facts.get("activity_run_id"), "ActivityRunId")
    error_code = text(facts.get("error_code"), "ErrorCode")
    failure_type = text(facts.get("failure_type"), "FailureType")
    note = message(facts.get("message"), "ErrorMessage")
    occurred, raw_time = first_time(
        received_at_ms, facts.get("time"), essentials.get("firedDateTime")
    )
    if not (run_id or pipeline or factory):
        raise NormalizeError("missing_run_id", shape)
    signal = Signal.FAILURE if run_id and note else Signal.ENRICH
    details = {
        "shape": shape,
        "code_source": "adf_error" if error_code else "",
        "subscription_id": subscription,
        "resource_group": group,
        "activity_name": activity,
        "activity_type": text(facts.get("activity_type"), "ActivityType"),
        "alert_rule": text(essentials.get("alertRule"), "alertRule"),
        "azure_alert_id": text(essentials.get("alertId"), "alertId"),
    }
    if signal is Signal.ENRICH:
        details.update(window)
    azure_id = details["azure_alert_id"] if signal is Signal.ENRICH else ""
    return Alert(
        alert_id=alert_id(
            ADF,
            signal.value,
            factory,
            run_id,
            sub_id,
            pipeline,
            activity,
            error_code,
            raw_time,
            azure_id,
        ),
        source=ADF,
        kind=(Kind.ACTIVITY_RUN if (sub_id or activity) else Kind.PIPELINE_RUN).value,
        signal=signal.value,
        scope=factory,
        run_id=run_id,
        sub_id=sub_id,
        group_id=ident(facts.get("group_id"), "RunGroupId"),
        pipeline=pipeline,
        error_code=error_code,
        failure_type=failure_type,
        message=note,
        occurred_at=occurred,
        details=compact(details),
    )


def _metric_alert(condition, all_of, essentials, received_at_ms, skips) -> list[Alert]:
    """PipelineFailedRuns/ActivityFailedRuns: pipeline + failure type over a window, no run id."""
    window = _window(
        condition.get("windowStartTime"),
        condition.get("windowEndTime"),
        condition.get("windowSize"),
        essentials.get("firedDateTime"),
    )
    alerts = []
    for entry in all_of:
        entry = mapping(entry, "allOf[]")
        metric = entry.get("metricName")
        if not isinstance(metric, str) or metric not in FAILED_RUN_METRICS:
            skips.append("metric_ignored")
            continue
        dims = {_fold(n): v for n, v in _dimension_pairs(entry.get("dimensions"))}
        subscription, group, factory = _factory({"resource_id": dims.get("resourceid")}, essentials)
        if not factory:
            raise NormalizeError("missing_factory", str(metric))
        activity_level = metric == "ActivityFailedRuns"
        pipeline = text(dims.get("pipelinename" if activity_level else "name"), "Name")
        activity = text(dims.get("name"), "Name") if activity_level else ""
        failure_type = text(dims.get("failuretype"), "FailureType")
        details = {
            "shape": "azure_metric_alert",
            "metric_name": metric,
            "subscription_id": subscription,
            "resource_group": group,
            "activity_name": activity,
            "activity_type": text(dims.get("activitytype"), "ActivityType"),
            "alert_rule": text(essentials.get("alertRule"), "alertRule"),
            "azure_alert_id": text(essentials.get("alertId"), "alertId"),
            **window,
        }
        occurred, raw_time = first_time(received_at_ms, essentials.get("firedDateTime"))
        alerts.append(
            Alert(
                alert_id=alert_id(
                    ADF,
                    "metric",
                    factory,
                    pipeline,
                    activity,
                    failure_type,
                    raw_time,
                    details["azure_alert_id"],
                    details.get("window_start_ms", ""),
                ),
                source=ADF,
                kind=(Kind.ACTIVITY_RUN if activity_level else Kind.PIPELINE_RUN).value,
                signal=Signal.ENRICH.value,
                scope=factory,
                pipeline=pipeline,
                failure_type=failure_type,
                occurred_at=occurred,
                details=compact(details),
            )
        )
    return unique(alerts)
