"""Databricks clusters, libraries and job runs through the official databricks-sdk.

Decides what the SDK leaves open:

* **Threads, bounded.** The SDK blocks, so its calls run on one dedicated thread pool
  (``loop.run_in_executor``; the loop's default executor is small and shared), behind one
  semaphore per workspace: ``threads`` calls in flight per workspace, the pool sized for all of
  them. Each ``WorkspaceClient`` is built on that pool too (the SDK probes the host while
  building), once per workspace, and kept. How a client is configured - auth per workspace,
  the no-waiting clock, its connection pool - is :mod:`streams.adapters.databricks_workspace`.
* **Our own rate limit.** Before a call, a token is taken from the workspace's bucket
  (:mod:`streams.policy.throttle`): reads (``clusters/get``, ``runs/get``, statuses, events) and
  writes (start, restart, resize, libraries, repair, run-now) separately, by default at the
  per-workspace limits Databricks documents for ``runs/get`` (100/s) and ``run-now`` (20/s),
  one second's worth at once (the worker takes them from ``PIPEMEDIC_DATABRICKS_READS_PER_S``
  and ``..._WRITES_PER_S``). An empty bucket raises :class:`HeldBack` without calling; a 429
  empties the bucket, so the calls behind it hold back too.
* **Alert content never shapes a call.** Workspace, job and run ids must be positive 64-bit
  integers, cluster ids letters, digits and dashes (``0923-164208-meows279``; older and pool clusters
  vary, so only the characters are checked), warehouse ids letters and digits, statement ids
  hex digits and dashes; anything else is ``BAD_REQUEST`` before a request is built. The only
  SQL sent is a statement the caller took from the estate (:mod:`streams.policy.tables`).
* **Bounded answers.** ``runs/get-output`` may carry 5 MB of notebook output: only its
  ``error`` and ``error_trace`` are kept, trimmed (:func:`streams.policy.root_cause.trimmed_output`).
  A statement is submitted without waiting (``wait_timeout=0s``) and polled with
  ``get_statement``.
* **Domain shapes.** Answers become small frozen records
  (:mod:`streams.adapters.databricks_records`, re-exported here), errors become
  :class:`PlatformError` (table ``KIND_BY_ERROR``, first match wins), so nothing above this
  module sees an SDK type. Long-running operations (start, restart, repair, run-now) return as
  soon as Databricks accepted them; their waiters are never used.

A workspace id not in the config is :class:`OutsideEstate`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as sdk_errors
from databricks.sdk.service import compute
from pydantic import SecretStr

from streams.adapters.databricks_records import (
    Cluster,
    ClusterEvent,
    JobRun,
    LibraryStatus,
    Statement,
    TaskRun,
    cluster_event_from_sdk,
    cluster_from_sdk,
    job_run_from_sdk,
    library_status_from_sdk,
    statement_from_sdk,
)
from streams.adapters.databricks_workspace import (
    AuthType,
    CredentialFor,
    CredentialRefused,
    CredentialUnavailable,
    WorkspaceAuth,
    connect,
    connection_pool,
)
from streams.adapters.errors import ErrorKind, HeldBack, OutsideEstate, PlatformError
from streams.policy.root_cause import trimmed_output
from streams.policy.throttle import Rate, TokenBuckets

T = TypeVar("T")

__all__ = [  # the records live in databricks_records; callers import them from here
    "Cluster",
    "ClusterEvent",
    "DatabricksClient",
    "DatabricksConfig",
    "JobRun",
    "KIND_BY_ERROR",
    "LibraryStatus",
    "Statement",
    "TaskRun",
    "WorkspaceRef",
    "platform_error",
]

# Per workspace, one second's worth of what Databricks documents: runs/get 100/s, run-now 20/s.
READS = Rate(capacity=100, refill_per_s=100)
WRITES = Rate(capacity=20, refill_per_s=20)


@dataclass(frozen=True)
class WorkspaceRef:
    """One estate workspace: its host and how to authenticate (the estate's fields)."""

    host: str
    token: SecretStr | None = field(default=None, repr=False)  # auth: pat
    auth: AuthType = "pat"
    client_id: str | None = None  # auth: oauth-m2m (a Databricks service principal)
    client_secret: SecretStr | None = field(default=None, repr=False)
    credential: str | None = None  # auth: azure, the estate's named azure-identity credential


@dataclass(frozen=True)
class DatabricksConfig:
    """What the client needs of the estate's ``databricks`` section (which may pass its own
    model with these attributes)."""

    workspaces: Mapping[str, WorkspaceAuth]
    threads: int = 32  # calls in flight at once per workspace (estate key ``threads``)
    timeout_s: float = 30.0


# First match wins: subclasses before their parents (InvalidState is a BadRequest).
KIND_BY_ERROR: tuple[tuple[type[BaseException], ErrorKind], ...] = (
    (sdk_errors.TooManyRequests, ErrorKind.THROTTLED),  # + ResourceExhausted, RequestLimitExceeded
    (sdk_errors.InvalidState, ErrorKind.CONFLICT),  # e.g. resize of a cluster that is not RUNNING
    (sdk_errors.ResourceConflict, ErrorKind.CONFLICT),  # + Aborted, AlreadyExists
    (sdk_errors.NotFound, ErrorKind.NOT_FOUND),  # + ResourceDoesNotExist
    (sdk_errors.Unauthenticated, ErrorKind.AUTH),
    (sdk_errors.PermissionDenied, ErrorKind.AUTH),
    (CredentialRefused, ErrorKind.AUTH),  # the token endpoint refused the service principal
    (sdk_errors.BadRequest, ErrorKind.BAD_REQUEST),  # + InvalidParameterValue
    (sdk_errors.NotImplemented, ErrorKind.BAD_REQUEST),
    # InternalError, TemporarilyUnavailable, DeadlineExceeded, and statuses the SDK has no
    # class for (502)
    (sdk_errors.DatabricksError, ErrorKind.TRANSIENT),
    (requests.RequestException, ErrorKind.TRANSIENT),  # timeouts, refused and reset connections
    (CredentialUnavailable, ErrorKind.TRANSIENT),  # no token this time
)

# Databricks reports most missing objects as 400 INVALID_PARAMETER_VALUE "... does not exist".
_DOES_NOT_EXIST = re.compile(r"does not exist|doesn't exist", re.IGNORECASE)

# What an id from an alert may look like before it goes into a request.
_NUMBER = re.compile(r"[1-9][0-9]{0,18}")  # workspace, job and run ids
_CLUSTER_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,98}[A-Za-z0-9])?")
_WAREHOUSE_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_STATEMENT_ID = re.compile(r"[0-9A-Fa-f](?:[0-9A-Fa-f-]{0,62}[0-9A-Fa-f])?")


class DatabricksClient:
    def __init__(
        self,
        config: DatabricksConfig,
        *,
        credential_for: CredentialFor | None = None,
        reads: Rate = READS,
        writes: Rate = WRITES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``credential_for(name)``: the estate's azure-identity async credential of that
        name, for workspaces with ``auth: azure``. ``reads``/``writes``: our own rate limits
        per workspace."""
        self._config = config
        self._credential_for = credential_for
        self._monotonic = monotonic
        self._pool = ThreadPoolExecutor(
            max_workers=config.threads * max(1, len(config.workspaces)),
            thread_name_prefix="databricks",
        )
        self._gates = {ws: asyncio.Semaphore(config.threads) for ws in config.workspaces}
        self._building = {ws: asyncio.Lock() for ws in config.workspaces}
        self._reads = TokenBuckets(reads)
        self._writes = TokenBuckets(writes)
        self._clients: dict[str, WorkspaceClient] = {}
        self._connections = {ws: connection_pool(config.threads) for ws in config.workspaces}

    def close(self) -> None:
        """Stop the pool's threads once their calls end (calls not started are dropped), and
        the workspaces' connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for connections in self._connections.values():
            if connections is not None:
                connections.close()

    async def aclose(self) -> None:
        self.close()

    async def get_cluster(self, ws: str, cluster_id: str) -> Cluster:
        cid = _cluster_id(cluster_id)
        return cluster_from_sdk(await self._read(ws, lambda w: w.clusters.get(cid)))

    async def start_cluster(self, ws: str, cluster_id: str) -> None:
        cid = _cluster_id(cluster_id)
        await self._write(ws, lambda w: w.clusters.start(cid))

    async def restart_cluster(self, ws: str, cluster_id: str) -> None:
        cid = _cluster_id(cluster_id)
        await self._write(ws, lambda w: w.clusters.restart(cid))

    async def resize_cluster(
        self,
        ws: str,
        cluster_id: str,
        num_workers: int | None = None,
        *,
        autoscale: tuple[int, int] | None = None,
    ) -> None:
        """Set a fixed size, or with ``autoscale=(min, max)`` new autoscaling bounds."""
        cid = _cluster_id(cluster_id)
        if (num_workers is None) == (autoscale is None):
            raise PlatformError(ErrorKind.BAD_REQUEST, "resize needs num_workers or autoscale")
        bounds = None
        if autoscale is not None:
            bounds = compute.AutoScale(min_workers=autoscale[0], max_workers=autoscale[1])
        await self._write(
            ws, lambda w: w.clusters.resize(cid, num_workers=num_workers, autoscale=bounds)
        )

    async def library_statuses(self, ws: str, cluster_id: str) -> list[LibraryStatus]:
        cid = _cluster_id(cluster_id)
        statuses = await self._read(ws, lambda w: list(w.libraries.cluster_status(cid)))
        return [library_status_from_sdk(status) for status in statuses]

    async def install_library(self, ws: str, cluster_id: str, pypi_package: str) -> None:
        cid = _cluster_id(cluster_id)
        library = compute.Library(pypi=compute.PythonPyPiLibrary(package=pypi_package))
        await self._write(ws, lambda w: w.libraries.install(cid, [library]))

    async def uninstall_library(self, ws: str, cluster_id: str, pypi_package: str) -> None:
        cid = _cluster_id(cluster_id)
        library = compute.Library(pypi=compute.PythonPyPiLibrary(package=pypi_package))
        await self._write(ws, lambda w: w.libraries.uninstall(cid, [library]))

    async def cluster_events(
        self, ws: str, cluster_id: str, event_types: Iterable[str] = (), *, limit: int = 50
    ) -> list[ClusterEvent]:
        """The newest ``limit`` events of the given types, newest first."""
        cid = _cluster_id(cluster_id)
        try:
            types = [compute.EventType(name) for name in event_types] or None
        except ValueError as exc:
            raise PlatformError(ErrorKind.BAD_REQUEST, f"cluster events: {exc}") from None

        def newest(w: WorkspaceClient) -> list[compute.ClusterEvent]:
            events = w.clusters.events(
                cid, event_types=types, order=compute.GetEventsOrder.DESC, limit=limit
            )
            return list(itertools.islice(events, limit))  # the SDK would page through all

        return [cluster_event_from_sdk(event) for event in await self._read(ws, newest)]

    async def get_run(self, ws: str, run_id: int | str) -> JobRun:
        run_no = _number(run_id, "run id")
        return job_run_from_sdk(
            await self._read(ws, lambda w: w.jobs.get_run(run_no, include_history=True))
        )

    async def get_run_json(self, ws: str, run_id: int | str) -> dict[str, Any]:
        """The ``jobs/runs/get`` answer as the REST API shapes it, for alert enrichment."""
        run_no = _number(run_id, "run id")
        run = await self._read(ws, lambda w: w.jobs.get_run(run_no, include_history=True))
        return run.as_dict()

    async def get_run_output(self, ws: str, task_run_id: int | str) -> dict[str, str]:
        """The ``error`` and ``error_trace`` of one task run's ``runs/get-output``, trimmed."""
        run_no = _number(task_run_id, "task run id")
        output = await self._read(ws, lambda w: w.jobs.get_run_output(run_no))
        return trimmed_output(output.as_dict())

    async def execute_statement(self, ws: str, warehouse_id: str, statement: str) -> Statement:
        """Submit ``statement`` (from the estate, never from an alert) to a SQL warehouse;
        returns at once (``wait_timeout=0s``), usually PENDING or RUNNING."""
        warehouse = _checked(warehouse_id, _WAREHOUSE_ID, "warehouse id")
        answer = await self._write(
            ws,
            lambda w: w.statement_execution.execute_statement(
                statement, warehouse, wait_timeout="0s"
            ),
        )
        return statement_from_sdk(answer)

    async def get_statement(self, ws: str, statement_id: str) -> Statement:
        sid = _checked(statement_id, _STATEMENT_ID, "statement id")
        return statement_from_sdk(
            await self._read(ws, lambda w: w.statement_execution.get_statement(sid))
        )

    async def repair_run(self, ws: str, run_id: int | str, latest_repair_id: int | None) -> int:
        """Re-run the failed tasks of a finished run; returns the repair id (not awaited)."""
        run_no = _number(run_id, "run id")
        waiter = await self._write(
            ws,
            lambda w: w.jobs.repair_run(
                run_no, rerun_all_failed_tasks=True, latest_repair_id=latest_repair_id
            ),
        )
        return int(waiter.response.repair_id)

    async def run_now(self, ws: str, job_id: int | str, idempotency_token: str) -> int:
        """Trigger a job; the same token never launches a second run (Databricks guarantees it)."""
        job_no = _number(job_id, "job id")
        waiter = await self._write(
            ws, lambda w: w.jobs.run_now(job_no, idempotency_token=idempotency_token)
        )
        return int(waiter.response.run_id)

    async def _read(self, ws: str, operation: Callable[[WorkspaceClient], T]) -> T:
        return await self._call(ws, self._reads, "reads", operation)

    async def _write(self, ws: str, operation: Callable[[WorkspaceClient], T]) -> T:
        return await self._call(ws, self._writes, "writes", operation)

    async def _call(
        self,
        ws: str,
        buckets: TokenBuckets,
        kind: str,
        operation: Callable[[WorkspaceClient], T],
    ) -> T:
        where = f"Databricks workspace {_number(ws, 'workspace id')}"
        if ws not in self._config.workspaces:
            raise OutsideEstate(f"Databricks workspace {ws!r}")
        wait_s = buckets.take(ws, self._monotonic())
        if wait_s > 0:
            raise HeldBack(f"{where} {kind}", wait_s)
        async with self._gates[ws]:
            try:
                client = self._clients.get(ws) or await self._connect(ws)
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, _first_failure, operation, client)
            except PlatformError:
                raise
            except Exception as exc:
                error = platform_error(exc, where)
        if error.kind is ErrorKind.THROTTLED:  # the platform's no: everything behind waits too
            buckets.observe(ws, 0, self._monotonic())
        raise error

    async def _connect(self, ws: str) -> WorkspaceClient:
        async with self._building[ws]:
            client = self._clients.get(ws)
            if client is None:
                entry = self._config.workspaces[ws]
                credential = None
                if entry.auth == "azure" and self._credential_for is not None and entry.credential:
                    credential = self._credential_for(entry.credential)  # on the loop it serves
                loop = asyncio.get_running_loop()
                client = await loop.run_in_executor(
                    self._pool,
                    lambda: connect(
                        entry,
                        timeout_s=self._config.timeout_s,
                        connections=self._config.threads,
                        pool=self._connections[ws],
                        loop=loop,
                        credential=credential,
                    ),
                )
                self._clients[ws] = client
        return client


def _first_failure(operation: Callable[[WorkspaceClient], T], client: WorkspaceClient) -> T:
    """Run on a pool thread. When the SDK gave up retrying (``SkipWaits``), raise the failure
    it retried: its ``TimeoutError`` would lose that ``__cause__`` on the way to the loop
    (asyncio rebuilds a ``TimeoutError`` from a thread's future)."""
    try:
        return operation(client)
    except TimeoutError as exc:
        if isinstance(exc.__cause__, Exception):
            raise exc.__cause__ from None
        raise


def platform_error(exc: BaseException, where: str) -> PlatformError:
    """Translate an SDK, credential or transport failure (see ``KIND_BY_ERROR``)."""
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


def _number(value: int | str, what: str) -> int:
    """A workspace, job or run id: a positive integer, whatever the alert said."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        number = int(value)
    if number is not None and 0 < number < 2**63:  # Databricks ids are int64
        return number
    raise PlatformError(ErrorKind.BAD_REQUEST, f"Databricks {what} {_shown(value)} cannot exist")


def _cluster_id(value: str) -> str:
    return _checked(value, _CLUSTER_ID, "cluster id")


def _checked(value: str, form: re.Pattern[str], what: str) -> str:
    if isinstance(value, str) and form.fullmatch(value):
        return value
    raise PlatformError(ErrorKind.BAD_REQUEST, f"Databricks {what} {_shown(value)} cannot exist")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
