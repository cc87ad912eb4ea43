"""Databricks facts from job webhooks, cluster terminations/events, library failures, runs/get.

Decisions (see platforms.md section 1d):

* A job webhook carries no error facts: ``jobs.on_failure`` is ENRICH (the agent calls
  ``jobs/runs/get`` and hands the JSON to :func:`databricks_run`); ``jobs.on_success`` is
  SUCCESS; every other ``jobs.*`` event gives nothing. For task events ``run_id`` is the
  parent (job) run, ``sub_id`` the task key, the task run id goes to ``details.task_run_id``.
* Two vocabularies stay apart: a cluster *termination code* (``termination_reason.code``,
  e.g. DRIVER_UNREACHABLE) has ``details.code_source = "termination_reason"``; a cluster
  *event type* (``DRIVER_NOT_RESPONDING``) has ``"cluster_event"``; a job run's
  ``termination_details.code`` has ``"termination_details"``. The rule table matches on it.
* A normal termination (type SUCCESS, or INACTIVITY/JOB_FINISHED/USER_REQUEST) is never an
  incident: nothing comes out (skip ``normal_termination``).
* The ``runs/get`` answer to an ENRICH webhook is read by ``normalize_databricks_run``.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    required_ident,
    sequence,
    text,
)

DATABRICKS = Source.DATABRICKS.value
NORMAL_TERMINATION_CODES = frozenset({"INACTIVITY", "JOB_FINISHED", "USER_REQUEST"})
CLUSTER_FAILURE_EVENTS = frozenset(
    {
        "DRIVER_NOT_RESPONDING",
        "DRIVER_UNAVAILABLE",
        "DBFS_DOWN",
        "METASTORE_DOWN",
        "NODES_LOST",
        "SPARK_EXCEPTION",
        "TERMINATING",
    }
)


def workspace(payload: Mapping[str, Any]) -> str:
    found = payload.get("workspace_id", payload.get("workspace"))
    if isinstance(found, Mapping):
        found = found.get("workspace_id", found.get("id"))
    return ident(found, "workspace_id")


# ---------------------------------------------------------------- job webhooks


def job_webhook(payload: Mapping[str, Any], received_at_ms: int, skips: list[str]) -> list[Alert]:
    event = text(payload.get("event_type"), "event_type")
    if event not in ("jobs.on_failure", "jobs.on_success"):
        if event.startswith("jobs."):
            skips.append("event_ignored")
            return []
        raise NormalizeError("unknown_event_type", event[:80])
    scope = workspace(payload)
    run = mapping(payload.get("run"), "run")
    job = mapping(payload.get("job"), "job")
    task_key = text(mapping(payload.get("task"), "task").get("task_key"), "task_key")
    own_run = required_ident(run.get("run_id"), "run_id", "missing_run_id")
    parent = ident(run.get("parent_run_id"), "parent_run_id")
    if task_key and not parent:
        raise NormalizeError("missing_run_id", "parent_run_id")
    task_level = bool(parent)
    signal = Signal.ENRICH if event == "jobs.on_failure" else Signal.SUCCESS
    details = {
        "shape": "databricks_job_webhook",
        "event_type": event,
        "task_run_id": own_run if task_level else "",
    }
    return [
        Alert(
            alert_id=alert_id(DATABRICKS, event, scope, own_run, parent, task_key),
            source=DATABRICKS,
            kind=(Kind.TASK_RUN if task_level else Kind.JOB_RUN).value,
            signal=signal.value,
            scope=scope,
            run_id=parent or own_run,
            sub_id=task_key,
            pipeline=text(job.get("name"), "job.name"),
            job_id=ident(job.get("job_id"), "job_id"),
            occurred_at=received_at_ms,  # the webhook carries no time
            details=compact(details),
        )
    ]


# ---------------------------------------------------------------- clusters and libraries


def event_payload(payload: Mapping[str, Any], received_at_ms: int, skips: list[str]) -> list[Alert]:
    """The relay's ``{"event": "cluster.terminated" | "library.install_failed", ...}`` shape."""
    event = text(payload.get("event"), "event")
    if event == "cluster.terminated":
        cluster = mapping(payload.get("cluster"), "cluster")
        return _termination(
            cluster,
            workspace(payload),
            payload.get("timestamp"),
            "databricks_cluster_terminated",
            received_at_ms,
            skips,
        )
    if event == "library.install_failed":
        return [
            _library_alert(
                payload,
                mapping(payload.get("cluster"), "cluster"),
                payload.get("library"),
                payload.get("error_message"),
                "databricks_library_event",
                received_at_ms,
            )
        ]
    if event.startswith(("cluster.", "library.")):
        skips.append("event_ignored")
        return []
    raise NormalizeError("unknown_event_type", event[:80])


def cluster_state(payload: Mapping[str, Any], received_at_ms: int, skips: list[str]) -> list[Alert]:
    """A ``clusters/get`` body: only its termination reason matters."""
    return _termination(
        payload, workspace(payload), None, "databricks_cluster", received_at_ms, skips
    )


def _termination(
    cluster: Mapping[str, Any],
    scope: str,
    when: Any,
    shape: str,
    received_at_ms: int,
    skips: list[str],
) -> list[Alert]:
    cluster_id = required_ident(cluster.get("cluster_id"), "cluster_id", "missing_cluster_id")
    reason = mapping(cluster.get("termination_reason"), "termination_reason")
    code = text(reason.get("code"), "termination_reason.code")
    kind_of_end = text(reason.get("type"), "termination_reason.type")
    if code in NORMAL_TERMINATION_CODES or kind_of_end == "SUCCESS":
        skips.append("normal_termination")
        return []
    params = mapping(reason.get("parameters"), "parameters")
    note = message(cluster.get("state_message"), "state_message")
    platform_note = message(params.get("databricks_error_message"), "databricks_error_message")
    if platform_note and platform_note not in note:
        note = f"{note}\n{platform_note}" if note else platform_note
    occurred, raw_time = first_time(received_at_ms, when, cluster.get("terminated_time"))
    details = {
        "shape": shape,
        "code_source": "termination_reason" if code else "",
        "state": text(cluster.get("state"), "state"),
        "cluster_name": text(cluster.get("cluster_name"), "cluster_name"),
    }
    for name, value in list(params.items())[:8]:
        if isinstance(name, str) and isinstance(value, str) and name != "databricks_error_message":
            details[f"param.{name[:60]}"] = text(value, "parameters")
    return [
        Alert(
            alert_id=alert_id(
                DATABRICKS, "terminated", scope, cluster_id, code, kind_of_end, raw_time
            ),
            source=DATABRICKS,
            kind=Kind.CLUSTER.value,
            scope=scope,
            cluster_id=cluster_id,
            error_code=code,
            failure_type=kind_of_end,
            message=note,
            occurred_at=occurred,
            details=compact(details),
        )
    ]


def cluster_events(
    payload: Mapping[str, Any], received_at_ms: int, skips: list[str]
) -> list[Alert]:
    """``clusters/events`` results (``{"events": [...]}``) or one relayed event."""
    scope = workspace(payload)
    events = sequence(payload.get("events"), "events") if "events" in payload else [payload]

    def build(event: Any, _skips: list[str]) -> Alert | None:
        event = mapping(event, "events[]")
        kind_of_event = text(event.get("type"), "type")
        if kind_of_event not in CLUSTER_FAILURE_EVENTS:
            _skips.append("event_ignored")
            return None
        cluster_id = required_ident(event.get("cluster_id"), "cluster_id", "missing_cluster_id")
        details = mapping(event.get("details"), "details")
        if kind_of_event == "TERMINATING":
            cluster = {"cluster_id": cluster_id, "termination_reason": details.get("reason")}
            found = _termination(
                cluster,
                scope,
                event.get("timestamp"),
                "databricks_cluster_event",
                received_at_ms,
                _skips,
            )
            return found[0] if found else None
        occurred, raw_time = first_time(received_at_ms, event.get("timestamp"))
        return Alert(
            alert_id=alert_id(DATABRICKS, "event", scope, cluster_id, kind_of_event, raw_time),
            source=DATABRICKS,
            kind=Kind.CLUSTER.value,
            scope=scope,
            cluster_id=cluster_id,
            error_code=kind_of_event,
            message=message(details.get("driver_state_message"), "driver_state_message"),
            occurred_at=occurred,
            details={"shape": "databricks_cluster_event", "code_source": "cluster_event"},
        )

    if not events:
        skips.append("empty_batch")
        return []
    return collect(events, build, skips)


_LIBRARY_SPECS = (("pypi", "package"), ("maven", "coordinates"), ("cran", "package"))
_LIBRARY_FILES = ("whl", "jar", "egg", "requirements")


def _library(spec: Any) -> tuple[str, str]:
    spec = mapping(spec, "library")
    for kind, key in _LIBRARY_SPECS:
        if kind in spec:
            return kind, text(mapping(spec[kind], f"library.{kind}").get(key), f"library.{kind}")
    for kind in _LIBRARY_FILES:
        if kind in spec:
            return kind, text(spec[kind], f"library.{kind}")
    return "", ""


def _library_alert(
    payload: Mapping[str, Any],
    cluster: Mapping[str, Any],
    spec: Any,
    note: Any,
    shape: str,
    received_at_ms: int,
) -> Alert:
    scope = workspace(payload)
    cluster_id = required_ident(
        cluster.get("cluster_id", payload.get("cluster_id")), "cluster_id", "missing_cluster_id"
    )
    library_type, library = _library(spec)
    note = message(note, "error_message")
    occurred, raw_time = first_time(received_at_ms, payload.get("timestamp"))
    return Alert(
        alert_id=alert_id(
            DATABRICKS, "library", scope, cluster_id, library_type, library, note, raw_time
        ),
        source=DATABRICKS,
        kind=Kind.LIBRARY.value,
        scope=scope,
        cluster_id=cluster_id,
        library=library,
        message=note,
        occurred_at=occurred,
        details=compact(
            {
                "shape": shape,
                "library_type": library_type,
                "cluster_name": text(cluster.get("cluster_name"), "cluster_name"),
            }
        ),
    )


def library_statuses(
    payload: Mapping[str, Any], received_at_ms: int, skips: list[str]
) -> list[Alert]:
    """Libraries API ``cluster-status``: one alert per FAILED library."""
    entries = sequence(payload.get("library_statuses"), "library_statuses")

    def build(entry: Any, _skips: list[str]) -> Alert | None:
        entry = mapping(entry, "library_statuses[]")
        if entry.get("status") != "FAILED":
            _skips.append("library_not_failed")
            return None
        notes = [m for m in sequence(entry.get("messages"), "messages") if isinstance(m, str)]
        return _library_alert(
            payload,
            payload,
            entry.get("library"),
            "\n".join(notes)[:4000],
            "databricks_library_status",
            received_at_ms,
        )

    if not entries:
        skips.append("empty_batch")
        return []
    return collect(entries, build, skips)
