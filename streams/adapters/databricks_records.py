"""What Databricks answers, as the small frozen records the procedures read.

The SDK's dataclasses stop here: ``from_sdk`` functions turn a cluster, a library status, a
cluster event or a job run into a record with only the fields pipemedic decides on, enums as
their names and missing values as ``""``/``0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from databricks.sdk.service import compute, jobs, sql


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    state: str  # PENDING | RUNNING | RESTARTING | RESIZING | TERMINATING | TERMINATED | ERROR
    num_workers: int = 0
    autoscale_min: int | None = None
    autoscale_max: int | None = None
    termination_code: str = ""
    termination_type: str = ""
    state_message: str = ""


@dataclass(frozen=True)
class LibraryStatus:
    library: str  # "pandas==2.2.0" for PyPI, else the jar/whl path or maven coordinates
    status: str  # PENDING | INSTALLING | INSTALLED | FAILED | UNINSTALL_ON_RESTART | ...
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterEvent:
    type: str
    timestamp: int  # epoch ms
    reason_code: str = ""
    reason_type: str = ""


@dataclass(frozen=True)
class TaskRun:
    task_key: str
    run_id: int
    life_cycle_state: str = ""
    result_state: str = ""
    state_message: str = ""
    cluster_id: str = ""
    attempt_number: int = 0


@dataclass(frozen=True)
class JobRun:
    run_id: int
    job_id: int
    life_cycle_state: str = ""
    result_state: str = ""
    state_message: str = ""
    termination_code: str = ""
    termination_type: str = ""
    original_attempt_run_id: int = 0
    attempt_number: int = 0
    latest_repair_id: int | None = None
    tasks: tuple[TaskRun, ...] = ()


@dataclass(frozen=True)
class Statement:
    """A SQL statement on a warehouse (statement execution API)."""

    statement_id: str
    state: str  # PENDING | RUNNING | SUCCEEDED | FAILED | CANCELED | CLOSED
    error: str = ""  # "<error_code>: <message>" when it failed


def _name(value: Any) -> str:
    return "" if value is None else str(getattr(value, "value", value))


def cluster_from_sdk(details: compute.ClusterDetails) -> Cluster:
    reason = details.termination_reason
    scale = details.autoscale
    return Cluster(
        cluster_id=details.cluster_id or "",
        state=_name(details.state),
        num_workers=details.num_workers or 0,
        autoscale_min=scale.min_workers if scale else None,
        autoscale_max=scale.max_workers if scale else None,
        termination_code=_name(reason.code) if reason else "",
        termination_type=_name(reason.type) if reason else "",
        state_message=details.state_message or "",
    )


def library_status_from_sdk(status: compute.LibraryFullStatus) -> LibraryStatus:
    lib = status.library or compute.Library()
    name = (
        (lib.pypi.package if lib.pypi else None)
        or (lib.maven.coordinates if lib.maven else None)
        or (lib.cran.package if lib.cran else None)
        or lib.jar
        or lib.whl
        or lib.requirements
        or lib.egg
        or ""
    )
    return LibraryStatus(name, _name(status.status), tuple(status.messages or ()))


def cluster_event_from_sdk(event: compute.ClusterEvent) -> ClusterEvent:
    reason = event.details.reason if event.details else None
    return ClusterEvent(
        type=_name(event.type),
        timestamp=event.timestamp or 0,
        reason_code=_name(reason.code) if reason else "",
        reason_type=_name(reason.type) if reason else "",
    )


def _task_run(task: jobs.RunTask) -> TaskRun:
    state = task.state or jobs.RunState()
    return TaskRun(
        task_key=task.task_key,
        run_id=task.run_id or 0,
        life_cycle_state=_name(state.life_cycle_state),
        result_state=_name(state.result_state),
        state_message=state.state_message or "",
        cluster_id=task.cluster_instance.cluster_id if task.cluster_instance else "",
        attempt_number=task.attempt_number or 0,
    )


def job_run_from_sdk(run: jobs.Run) -> JobRun:
    state = run.state or jobs.RunState()
    details = run.status.termination_details if run.status else None
    repairs = [
        item.id
        for item in run.repair_history or ()
        if item.type == jobs.RepairHistoryItemType.REPAIR
    ]
    return JobRun(
        run_id=run.run_id or 0,
        job_id=run.job_id or 0,
        life_cycle_state=_name(state.life_cycle_state) or _name(run.status and run.status.state),
        result_state=_name(state.result_state),
        state_message=state.state_message or "",
        termination_code=_name(details.code) if details else "",
        termination_type=_name(details.type) if details else "",
        original_attempt_run_id=run.original_attempt_run_id or run.run_id or 0,
        attempt_number=run.attempt_number or 0,
        latest_repair_id=repairs[-1] if repairs else None,
        tasks=tuple(_task_run(task) for task in run.tasks or ()),
    )


def statement_from_sdk(response: sql.StatementResponse) -> Statement:
    status = response.status
    error = status.error if status else None
    said = ""
    if error is not None:
        said = ": ".join(part for part in (_name(error.error_code), error.message or "") if part)
    return Statement(
        statement_id=response.statement_id or "",
        state=_name(status.state) if status else "",
        error=said,
    )
