"""Databricks facts from a ``jobs/runs/get`` body, fetched for an ENRICH job webhook.

Decisions (see platforms.md section 1d):

* A run that is still going is WAIT: repair is refused while a run is in progress, and the
  final webhook follows.
* A cancelled, excluded or disabled run gives nothing (skip ``cancelled``); a success is
  SUCCESS.
* Otherwise one FAILURE per failed task (the latest attempt per task key; tasks skipped
  because an upstream failed are consequences, not causes), or one for the job run when no
  task failed. A task webhook (``sub_id`` = task key) narrows this to its own task.
* The error code comes from the task's ``termination_details``, then ``TIMEDOUT`` (result
  state), then ``INTERNAL_ERROR`` (life-cycle state), then the run's code; its vocabulary
  goes to ``details.code_source``. The message is the ``runs/get-output`` error when given,
  else the task's ``state_message``, else the run's.
* A task whose ``max_retries`` exceeds its ``attempt_number`` is WAIT unless the run has
  already terminated (then nothing will retry it). ``platform_retries_left`` is -1 for
  ``max_retries = -1`` (retry forever).
* ``group_id`` is the run's ``original_attempt_run_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.policy.model import Alert, Kind, Signal, Source
from streams.policy.normalize_base import (
    NormalizeError,
    alert_id,
    compact,
    first_time,
    ident,
    integer,
    mapping,
    message,
    sequence,
    text,
)

DATABRICKS = Source.DATABRICKS.value
ACTIVE_STATES = frozenset(
    {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY", "WAITING"}
)
TERMINAL_STATES = frozenset({"TERMINATED", "INTERNAL_ERROR", "SKIPPED"})
NO_ACTION_RESULTS = frozenset({"CANCELED", "EXCLUDED", "DISABLED", "UPSTREAM_CANCELED"})
NO_ACTION_CODES = frozenset(
    {"USER_CANCELED", "CANCELED", "SKIPPED", "DISABLED", "CLUSTER_TERMINATED_BY_USER"}
)
FAILED_RESULTS = frozenset({"FAILED", "TIMEDOUT"})


def _latest_attempts(tasks: Any) -> list[Mapping[str, Any]]:
    """One entry per task key: its latest attempt (retries appear as extra entries)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for task in sequence(tasks, "tasks"):
        task = mapping(task, "tasks[]")
        key = text(task.get("task_key"), "task_key")
        seen = latest.get(key)
        if seen is None or (integer(task.get("attempt_number")) or 0) >= (
            integer(seen.get("attempt_number")) or 0
        ):
            latest[key] = task
    return list(latest.values())


def _failed(task: Mapping[str, Any]) -> bool:
    state = mapping(task.get("state"), "state")
    result = state.get("result_state")
    return (isinstance(result, str) and result in FAILED_RESULTS) or state.get(
        "life_cycle_state"
    ) == "INTERNAL_ERROR"


def failed_task_runs(run: Any, sub_id: str = "", limit: int = 5) -> tuple[str, ...]:
    """The run ids of the failed tasks whose ``runs/get-output`` explains the failure: the
    latest attempt of each failed task (only ``sub_id``'s for a task webhook), at most
    ``limit``. Nothing for a run that is still going or malformed."""
    if not isinstance(run, Mapping):
        return ()
    try:
        state = mapping(run.get("state"), "state")
        if state.get("life_cycle_state") in ACTIVE_STATES:
            return ()
        tasks = [task for task in _latest_attempts(run.get("tasks")) if _failed(task)]
        if sub_id:
            tasks = [t for t in tasks if t.get("task_key") == sub_id] or tasks
        ids = [ident(task.get("run_id"), "task.run_id") for task in tasks]
    except NormalizeError:
        return ()
    return tuple(i for i in ids if i)[:limit]


def _code(
    state: Mapping[str, Any], status: Mapping[str, Any], fallback: tuple[str, str]
) -> tuple[str, str, str]:
    """(error code, its vocabulary, termination type) for a run or task."""
    ended = mapping(status.get("termination_details"), "termination_details")
    kind_of_end = text(ended.get("type"), "termination_details.type") or fallback[1]
    if state.get("result_state") == "TIMEDOUT":
        return "TIMEDOUT", "result_state", kind_of_end
    code = text(ended.get("code"), "termination_details.code")
    if code:
        return code, "termination_details", kind_of_end
    if state.get("life_cycle_state") == "INTERNAL_ERROR":
        return "INTERNAL_ERROR", "life_cycle_state", kind_of_end
    if fallback[0]:
        return fallback[0], "termination_details", kind_of_end
    return text(state.get("result_state"), "result_state"), "result_state", kind_of_end


def _output_message(outputs: Mapping[str, Any] | None, task_run_id: str) -> str:
    output = mapping((outputs or {}).get(task_run_id), "output")
    error = text(output.get("error"), "error", 2000)
    trace = text(output.get("error_trace"), "error_trace", 2000)
    return message("\n".join(part for part in (error, trace) if part))


def databricks_run(
    webhook: Alert,
    run: Any,
    received_at_ms: int,
    skips: list[str],
    outputs: Mapping[str, Any] | None = None,
) -> list[Alert]:
    if not isinstance(run, Mapping):
        raise NormalizeError("wrong_type:run")
    run_id = ident(run.get("run_id"), "run_id") or webhook.run_id
    if not run_id:
        raise NormalizeError("missing_run_id", "run_id")
    state = mapping(run.get("state"), "state")
    status = mapping(run.get("status"), "status")
    life = text(state.get("life_cycle_state"), "life_cycle_state")
    result = text(state.get("result_state"), "result_state")
    lifecycle_v2 = text(status.get("state"), "status.state")
    run_code, run_vocab, run_type = _code(state, status, ("", ""))
    if life in TERMINAL_STATES or lifecycle_v2 == "TERMINATED":
        terminal: bool | None = True
    elif life in ACTIVE_STATES or lifecycle_v2 in ACTIVE_STATES:
        terminal = False
    else:
        terminal = None
    scope = webhook.scope
    run_cluster = ident(
        mapping(run.get("cluster_instance"), "cluster_instance").get("cluster_id"), "cluster_id"
    )
    common = {
        "source": DATABRICKS,
        "scope": scope,
        "run_id": run_id,
        "group_id": ident(run.get("original_attempt_run_id"), "original_attempt_run_id"),
        "pipeline": text(run.get("run_name"), "run_name") or webhook.pipeline,
        "job_id": ident(run.get("job_id"), "job_id") or webhook.job_id,
    }
    run_details = {
        "shape": "databricks_run",
        "enriched_from": webhook.alert_id,
        "life_cycle_state": life or lifecycle_v2,
        "result_state": result,
        "termination_code": text(
            mapping(status.get("termination_details"), "td").get("code"), "code"
        ),
        "termination_type": run_type,
        "run_page_url": text(run.get("run_page_url"), "run_page_url"),
        "attempt_number": str(integer(run.get("attempt_number")) or 0),
    }
    run_end, raw_end = first_time(received_at_ms, run.get("end_time") or None)

    def job_alert(signal: Signal, code: str = "", vocab: str = "", note: str = "") -> Alert:
        return Alert(
            alert_id=alert_id(DATABRICKS, signal.value, scope, run_id, code, result, raw_end),
            kind=Kind.JOB_RUN.value,
            signal=signal.value,
            cluster_id=run_cluster or webhook.cluster_id,
            error_code=code,
            failure_type=run_type,
            message=note,
            occurred_at=run_end,
            details=compact({**run_details, "code_source": vocab}),
            **common,
        )

    if terminal is False:
        return [job_alert(Signal.WAIT)]
    if result in NO_ACTION_RESULTS or run_code in NO_ACTION_CODES:
        skips.append("cancelled")
        return []
    failed = [task for task in _latest_attempts(run.get("tasks")) if _failed(task)]
    if webhook.sub_id:
        failed = [t for t in failed if t.get("task_key") == webhook.sub_id] or failed
    if not failed:
        if result == "SUCCESS" or run_code == "SUCCESS":
            return [job_alert(Signal.SUCCESS)]
        note = message(state.get("state_message"), "state_message")
        return [job_alert(Signal.FAILURE, run_code, run_vocab, note)]

    alerts = []
    for task in failed:
        task_state = mapping(task.get("state"), "state")
        code, vocab, kind_of_end = _code(
            task_state,
            mapping(task.get("status"), "status"),
            (run_code if run_vocab == "termination_details" else "", run_type),
        )
        task_run_id = ident(task.get("run_id"), "task.run_id")
        attempt = integer(task.get("attempt_number")) or 0
        max_retries = integer(task.get("max_retries"))
        retries_left = -1 if max_retries == -1 else max(0, (max_retries or 0) - attempt)
        waiting = terminal is None and retries_left != 0
        note = (
            _output_message(outputs, task_run_id)
            or message(task_state.get("state_message"), "state_message")
            or message(state.get("state_message"), "state_message")
        )
        task_cluster = ident(
            mapping(task.get("cluster_instance"), "ci").get("cluster_id"), "cluster_id"
        )
        occurred, raw_time = first_time(
            received_at_ms, task.get("end_time") or None, run.get("end_time") or None
        )
        signal = Signal.WAIT if waiting else Signal.FAILURE
        key = text(task.get("task_key"), "task_key")
        details = {
            **run_details,
            "code_source": vocab,
            "task_run_id": task_run_id,
            "task_attempt_number": str(attempt),
            "task_result_state": text(task_state.get("result_state"), "result_state"),
            "cluster_kind": "all_purpose"
            if task.get("existing_cluster_id")
            else ("job" if task.get("job_cluster_key") or task.get("new_cluster") else ""),
        }
        alerts.append(
            Alert(
                alert_id=alert_id(
                    DATABRICKS,
                    signal.value,
                    scope,
                    run_id,
                    key,
                    task_run_id,
                    str(attempt),
                    code,
                    raw_time,
                ),
                kind=Kind.TASK_RUN.value,
                signal=signal.value,
                sub_id=key,
                cluster_id=task_cluster or run_cluster or webhook.cluster_id,
                error_code=code,
                failure_type=kind_of_end,
                message=note,
                platform_retries_left=retries_left,
                occurred_at=occurred,
                details=compact(details),
                **common,
            )
        )
    return alerts
