"""Databricks clusters, libraries and job runs through the official databricks-sdk.

Decides three things the SDK leaves open:

* **No threads.** The SDK blocks. Its calls run on the event loop instead, their HTTP
  exchanges over aiohttp (how, and why a thread pool cost too much CPU per call:
  :mod:`streams.adapters.databricks_calls`). ``threads`` bounds the calls in flight (the
  connections; the name is from when every call held a thread); more wait for a connection.
* **No waiting inside the SDK.** The SDK retries 429/503 and network errors itself, sleeping
  until ``retry_timeout_seconds`` - and it sleeps the full ``Retry-After`` *before* checking
  that deadline. Waiting is the retry policy's job, so the SDK gets a clock that refuses to
  sleep: the first retryable failure ends the call and becomes ``THROTTLED`` (with
  ``retry_after_s``) or ``TRANSIENT``. Long-running operations (start, restart, repair,
  run-now) return as soon as Databricks accepted them; their waiters are never used.
* **Domain shapes.** Answers become the small frozen records below, errors become
  :class:`PlatformError` (table ``KIND_BY_ERROR``, first match wins), so nothing above this
  module sees an SDK type.

One ``WorkspaceClient`` per configured workspace, built on first use (on a thread: the SDK
probes the host while building) and kept. A workspace id not in the config is
:class:`OutsideEstate`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as sdk_errors
from databricks.sdk.service import compute, jobs
from pydantic import SecretStr

from streams.adapters.databricks_calls import (
    SdkCalls,
    SdkWantedToWait,
    Workspace,
    connect_workspace,
)
from streams.adapters.errors import ErrorKind, OutsideEstate, PlatformError

T = TypeVar("T")


@dataclass(frozen=True)
class WorkspaceRef:
    host: str
    token: SecretStr = field(repr=False)


@dataclass(frozen=True)
class DatabricksConfig:
    workspaces: Mapping[str, WorkspaceRef]
    threads: int = 64  # calls in flight at once, over all workspaces (estate key ``threads``)
    timeout_s: float = 30.0


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


# First match wins: subclasses before their parents (InvalidState is a BadRequest).
KIND_BY_ERROR: tuple[tuple[type[BaseException], ErrorKind], ...] = (
    (sdk_errors.TooManyRequests, ErrorKind.THROTTLED),  # + ResourceExhausted, RequestLimitExceeded
    (sdk_errors.InvalidState, ErrorKind.CONFLICT),  # e.g. resize of a cluster that is not RUNNING
    (sdk_errors.ResourceConflict, ErrorKind.CONFLICT),  # + Aborted, AlreadyExists
    (sdk_errors.NotFound, ErrorKind.NOT_FOUND),  # + ResourceDoesNotExist
    (sdk_errors.Unauthenticated, ErrorKind.AUTH),
    (sdk_errors.PermissionDenied, ErrorKind.AUTH),
    (sdk_errors.BadRequest, ErrorKind.BAD_REQUEST),  # + InvalidParameterValue
    (sdk_errors.NotImplemented, ErrorKind.BAD_REQUEST),
    # InternalError, TemporarilyUnavailable, DeadlineExceeded, and statuses the SDK has no
    # class for (502)
    (sdk_errors.DatabricksError, ErrorKind.TRANSIENT),
    (requests.RequestException, ErrorKind.TRANSIENT),  # timeouts, refused and reset connections
)

# Databricks reports most missing objects as 400 INVALID_PARAMETER_VALUE "... does not exist".
_DOES_NOT_EXIST = re.compile(r"does not exist|doesn't exist", re.IGNORECASE)


class DatabricksClient:
    def __init__(self, config: DatabricksConfig) -> None:
        self._config = config
        self._calls = SdkCalls(connections=config.threads, timeout_s=config.timeout_s)
        self._workspaces: dict[str, Workspace] = {}
        self._building = asyncio.Lock()

    def close(self) -> None:
        self._calls.close()

    async def aclose(self) -> None:
        await self._calls.aclose()

    async def get_cluster(self, ws: str, cluster_id: str) -> Cluster:
        return _cluster(await self._call(ws, lambda w: w.clusters.get(cluster_id)))

    async def start_cluster(self, ws: str, cluster_id: str) -> None:
        await self._call(ws, lambda w: w.clusters.start(cluster_id))

    async def restart_cluster(self, ws: str, cluster_id: str) -> None:
        await self._call(ws, lambda w: w.clusters.restart(cluster_id))

    async def resize_cluster(
        self,
        ws: str,
        cluster_id: str,
        num_workers: int | None = None,
        *,
        autoscale: tuple[int, int] | None = None,
    ) -> None:
        """Set a fixed size, or with ``autoscale=(min, max)`` new autoscaling bounds."""
        if (num_workers is None) == (autoscale is None):
            raise PlatformError(ErrorKind.BAD_REQUEST, "resize needs num_workers or autoscale")
        bounds = None
        if autoscale is not None:
            bounds = compute.AutoScale(min_workers=autoscale[0], max_workers=autoscale[1])
        await self._call(
            ws, lambda w: w.clusters.resize(cluster_id, num_workers=num_workers, autoscale=bounds)
        )

    async def library_statuses(self, ws: str, cluster_id: str) -> list[LibraryStatus]:
        statuses = await self._call(ws, lambda w: list(w.libraries.cluster_status(cluster_id)))
        return [_library_status(status) for status in statuses]

    async def install_library(self, ws: str, cluster_id: str, pypi_package: str) -> None:
        library = compute.Library(pypi=compute.PythonPyPiLibrary(package=pypi_package))
        await self._call(ws, lambda w: w.libraries.install(cluster_id, [library]))

    async def uninstall_library(self, ws: str, cluster_id: str, pypi_package: str) -> None:
        library = compute.Library(pypi=compute.PythonPyPiLibrary(package=pypi_package))
        await self._call(ws, lambda w: w.libraries.uninstall(cluster_id, [library]))

    async def cluster_events(
        self, ws: str, cluster_id: str, event_types: Iterable[str] = (), *, limit: int = 50
    ) -> list[ClusterEvent]:
        """The newest ``limit`` events of the given types, newest first."""
        try:
            types = [compute.EventType(name) for name in event_types] or None
        except ValueError as exc:
            raise PlatformError(ErrorKind.BAD_REQUEST, f"cluster events: {exc}") from None

        def newest(w: WorkspaceClient) -> list[compute.ClusterEvent]:
            events = w.clusters.events(
                cluster_id, event_types=types, order=compute.GetEventsOrder.DESC, limit=limit
            )
            return list(itertools.islice(events, limit))  # the SDK would page through all

        return [_cluster_event(event) for event in await self._call(ws, newest)]

    async def get_run(self, ws: str, run_id: int | str) -> JobRun:
        run_no = _run_number(run_id, "run id")
        return _job_run(
            await self._call(ws, lambda w: w.jobs.get_run(run_no, include_history=True))
        )

    async def get_run_json(self, ws: str, run_id: int | str) -> dict[str, Any]:
        """The ``jobs/runs/get`` answer as the REST API shapes it, for alert enrichment."""
        run_no = _run_number(run_id, "run id")
        run = await self._call(ws, lambda w: w.jobs.get_run(run_no, include_history=True))
        return run.as_dict()

    async def repair_run(self, ws: str, run_id: int | str, latest_repair_id: int | None) -> int:
        """Re-run the failed tasks of a finished run; returns the repair id (not awaited)."""
        run_no = _run_number(run_id, "run id")
        waiter = await self._call(
            ws,
            lambda w: w.jobs.repair_run(
                run_no, rerun_all_failed_tasks=True, latest_repair_id=latest_repair_id
            ),
        )
        return int(waiter.response.repair_id)

    async def run_now(self, ws: str, job_id: int | str, idempotency_token: str) -> int:
        """Trigger a job; the same token never launches a second run (Databricks guarantees it)."""
        job_no = _run_number(job_id, "job id")
        waiter = await self._call(
            ws, lambda w: w.jobs.run_now(job_no, idempotency_token=idempotency_token)
        )
        return int(waiter.response.run_id)

    async def _call(self, ws: str, operation: Callable[[WorkspaceClient], T]) -> T:
        if ws not in self._config.workspaces:
            raise OutsideEstate(f"Databricks workspace {ws!r}")
        try:
            return await self._calls.run(await self._workspace(ws), operation)
        except PlatformError:
            raise
        except Exception as exc:
            raise platform_error(exc, f"Databricks workspace {ws}") from None

    async def _workspace(self, ws: str) -> Workspace:
        workspace = self._workspaces.get(ws)
        if workspace is None:
            async with self._building:
                workspace = self._workspaces.get(ws)
                if workspace is None:
                    ref = self._config.workspaces[ws]
                    workspace = await asyncio.to_thread(
                        connect_workspace,
                        ref.host,
                        ref.token.get_secret_value(),
                        self._config.timeout_s,
                    )
                    self._workspaces[ws] = workspace
        return workspace


def platform_error(exc: BaseException, where: str) -> PlatformError:
    """Translate an SDK or transport failure (see ``KIND_BY_ERROR``)."""
    if isinstance(exc, SdkWantedToWait) and exc.__context__ is not None:
        exc = exc.__context__
    if isinstance(exc, ValueError) and not isinstance(
        exc,
        sdk_errors.DatabricksError | requests.RequestException,  # a garbled answer is not ours
    ):
        return PlatformError(ErrorKind.BAD_REQUEST, f"{where}: {exc}")  # e.g. client config
    kind = next((kind for cls, kind in KIND_BY_ERROR if isinstance(exc, cls)), ErrorKind.TRANSIENT)
    if kind is ErrorKind.BAD_REQUEST and _DOES_NOT_EXIST.search(str(exc)):
        kind = ErrorKind.NOT_FOUND
    retry_after = getattr(exc, "retry_after_secs", None)
    code = getattr(exc, "error_code", None)
    label = f"{type(exc).__name__}" + (f" {code}" if code else "")
    return PlatformError(
        kind,
        f"{where}: {label}: {exc}",
        retry_after_s=float(retry_after) if retry_after is not None else None,
    )


def _run_number(value: int | str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PlatformError(ErrorKind.BAD_REQUEST, f"{what} {value!r} is not a number") from None


def _name(value: Any) -> str:
    return "" if value is None else str(getattr(value, "value", value))


def _cluster(details: compute.ClusterDetails) -> Cluster:
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


def _library_status(status: compute.LibraryFullStatus) -> LibraryStatus:
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


def _cluster_event(event: compute.ClusterEvent) -> ClusterEvent:
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


def _job_run(run: jobs.Run) -> JobRun:
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
