"""The simulator's world file: what exists on the simulated platforms and how it behaves.

A world is plain data (YAML or JSON, format in ``docs/simulator.md``) loaded into the frozen
dataclasses below. Loading is strict - an unknown key, an unknown status or a run of an
undeclared pipeline is an error naming its place in the file - because a typo in a world
silently changes what a test or benchmark measures. The mutable platform state lives in the
platform modules and is rebuilt from these specs on every reset.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ADF_STATUSES = ("Queued", "InProgress", "Succeeded", "Failed", "Canceling", "Cancelled")
ADF_OUTCOMES = ("Succeeded", "Failed", "Cancelled")
CLUSTER_STATES = (
    "PENDING",
    "RUNNING",
    "RESTARTING",
    "RESIZING",
    "TERMINATING",
    "TERMINATED",
    "ERROR",
)
RUN_OUTCOMES = ("SUCCESS", "FAILED", "TIMEDOUT", "CANCELED")


class WorldError(ValueError):
    """The world file is malformed; the message names the offending key."""


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")


# --- error modes -------------------------------------------------------------------------
# ``first_n`` omitted (null) means: every matching request, forever.


@dataclass(frozen=True)
class Throttle:
    first_n: int | None = None
    retry_after_s: float = 1.0


@dataclass(frozen=True)
class Fail5xx:
    first_n: int | None = None
    status: int = 500


@dataclass(frozen=True)
class Hang:
    first_n: int | None = None
    seconds: float = 30.0  # longer than the client's timeout; then 504


@dataclass(frozen=True)
class Reject:
    status: int
    first_n: int | None = None
    code: str = ""
    message: str = "rejected by the simulator"


@dataclass(frozen=True)
class ErrorMode:
    path: str = "*"  # fnmatch pattern on the request path
    method: str = ""  # "" = any method
    latency_ms: float | None = None
    timeout: Hang | None = None
    throttle: Throttle | None = None
    fail_5xx: Fail5xx | None = None
    reject: Reject | None = None


# --- Azure AD ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AppSpec:
    """Another app registration: proves itself with a secret, a certificate (the PEM of the
    registered certificate) or a federated token (workload identity), whichever is set."""

    client_id: str
    tenant_id: str = "sim-tenant"
    client_secret: str = ""
    certificate: str = ""  # PEM text, or a path to a PEM file
    federated_token: str = ""


@dataclass(frozen=True)
class AzureAD:
    tenant_id: str = "sim-tenant"
    client_id: str = "sim-client"
    client_secret: str = "sim-secret"
    apps: tuple[AppSpec, ...] = ()  # more app registrations, any tenant
    # managed identity (IMDS and App Service endpoints): the user-assigned client ids that
    # exist; a request naming none gets the system-assigned identity
    managed_identities: tuple[str, ...] = ()
    identity_header: str = "sim-identity-header"  # App Service's X-IDENTITY-HEADER
    expires_in_s: int = 3599  # what token answers advertise
    valid_for_s: float | None = None  # server-side lifetime; shorter than expires_in -> 401s
    valid_for_uses: int | None = None  # a token is refused after this many ARM calls


@dataclass(frozen=True)
class Bucket:
    capacity: float
    refill_per_s: float


@dataclass(frozen=True)
class ArmLimits:
    """ARM's per-subscription token buckets (request-limits-and-throttling)."""

    reads: Bucket = Bucket(250, 25)
    writes: Bucket = Bucket(200, 10)


# --- Azure Data Factory ------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    reruns: tuple[str, ...] = ("Succeeded",)  # how successive runs end; the last repeats
    polls_to_finish: int = 1  # GETs that still show InProgress before the final status
    failure_message: str = "Operation on target Copy failed: simulated failure"

    def __post_init__(self) -> None:
        if not self.reruns:
            raise ValueError("reruns must name at least one outcome")
        for outcome in self.reruns:
            _one_of(outcome, ADF_OUTCOMES, "rerun outcome")


@dataclass(frozen=True)
class AdfRunSpec:
    run_id: str
    pipeline: str
    status: str = "Failed"
    run_group_id: str = ""  # defaults to run_id
    message: str = ""
    age_s: float = 600.0  # started this long before the world was loaded

    def __post_init__(self) -> None:
        _one_of(self.status, ADF_STATUSES, "status")


@dataclass(frozen=True)
class FactorySpec:
    name: str
    subscription: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "rg-sim"
    pipelines: tuple[PipelineSpec, ...] = ()
    runs: tuple[AdfRunSpec, ...] = ()

    def __post_init__(self) -> None:
        names = {p.name for p in self.pipelines}
        for run in self.runs:
            if run.pipeline not in names:
                raise ValueError(f"run {run.run_id} names undeclared pipeline {run.pipeline!r}")


# --- Databricks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Autoscale:
    min_workers: int
    max_workers: int


@dataclass(frozen=True)
class EventSpec:
    type: str
    age_s: float = 60.0
    reason_code: str = ""
    reason_type: str = ""


@dataclass(frozen=True)
class ClusterSpec:
    cluster_id: str
    state: str = "RUNNING"
    num_workers: int = 2
    autoscale: Autoscale | None = None
    polls_to_start: int = 1  # GETs that still show PENDING/RESTARTING/RESIZING
    termination_code: str = ""
    termination_type: str = ""
    state_message: str = ""
    libraries: tuple[str, ...] = ()  # installed PyPI packages, e.g. "pandas==2.2.0"
    events: tuple[EventSpec, ...] = ()

    def __post_init__(self) -> None:
        _one_of(self.state, CLUSTER_STATES, "cluster state")


@dataclass(frozen=True)
class TaskSpec:
    task_key: str
    result_state: str = "SUCCESS"
    life_cycle_state: str = "TERMINATED"
    state_message: str = ""
    cluster_id: str = ""
    error: str = ""  # what jobs/runs/get-output says of this task run (its real error)
    error_trace: str = ""


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    name: str = ""
    tasks: tuple[TaskSpec, ...] = (TaskSpec("main"),)
    runs: tuple[str, ...] = ("SUCCESS",)  # how successive run-now runs end; the last repeats
    repairs: tuple[str, ...] = ("SUCCESS",)  # how repairs of those runs end
    polls_to_finish: int = 1
    failure_message: str = "Simulated task failure"

    def __post_init__(self) -> None:
        if not self.runs or not self.repairs:
            raise ValueError("runs and repairs must name at least one outcome")
        for outcome in self.runs + self.repairs:
            _one_of(outcome, RUN_OUTCOMES, "run outcome")


@dataclass(frozen=True)
class JobRunSpec:
    run_id: int
    job_id: int
    result_state: str = "FAILED"
    life_cycle_state: str = "TERMINATED"
    state_message: str = ""
    termination_code: str = "RUN_EXECUTION_ERROR"
    termination_type: str = "CLIENT_ERROR"
    attempt_number: int = 0
    original_attempt_run_id: int | None = None
    tasks: tuple[TaskSpec, ...] = ()
    repairs: tuple[str, ...] = ("SUCCESS",)  # how successive repairs end; the last repeats
    polls_to_finish: int = 1
    age_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.repairs:
            raise ValueError("repairs must name at least one outcome")
        for outcome in self.repairs:
            _one_of(outcome, RUN_OUTCOMES, "repair outcome")


@dataclass(frozen=True)
class WarehouseSpec:
    """A SQL warehouse: runs statements (statement execution API)."""

    warehouse_id: str
    polls_to_finish: int = 1  # GETs of a statement that still show RUNNING
    failing_statements: tuple[str, ...] = ()  # fnmatch patterns of statements that FAIL


@dataclass(frozen=True)
class ServicePrincipalSpec:
    """A Databricks service principal: OAuth M2M (``POST /oidc/v1/token``) with this secret."""

    client_id: str
    client_secret: str
    expires_in_s: int = 3600  # lifetime of the tokens it gets (Databricks issues 1-hour ones)


@dataclass(frozen=True)
class WorkspaceSpec:
    workspace_id: str
    token: str
    service_principals: tuple[ServicePrincipalSpec, ...] = ()
    clusters: tuple[ClusterSpec, ...] = ()
    jobs: tuple[JobSpec, ...] = ()
    runs: tuple[JobRunSpec, ...] = ()
    failing_libraries: tuple[str, ...] = ()  # PyPI specs whose installation FAILS
    sql_warehouses: tuple[WarehouseSpec, ...] = ()
    tables: tuple[str, ...] = ()  # catalog.schema.table names that exist

    def __post_init__(self) -> None:
        jobs = {job.job_id for job in self.jobs}
        for run in self.runs:
            if run.job_id not in jobs:
                raise ValueError(f"run {run.run_id} names undeclared job {run.job_id}")


# --- the world ---------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    azure_ad: AzureAD = field(default_factory=AzureAD)
    arm_limits: ArmLimits = field(default_factory=ArmLimits)
    factories: tuple[FactorySpec, ...] = ()
    workspaces: tuple[WorkspaceSpec, ...] = ()
    error_modes: tuple[ErrorMode, ...] = ()
    latency_ms: float = 0.0  # every call, unless an error mode says otherwise
    adf_api_version: str = "2018-06-01"
    adf_page_size: int = 100  # queryPipelineRuns page size
    call_log_limit: int = 100_000  # oldest calls are dropped beyond this

    def __post_init__(self) -> None:
        for what, ids in (
            ("factory", [f.name.lower() for f in self.factories]),
            ("workspace", [w.workspace_id for w in self.workspaces]),
        ):
            duplicates = {i for i in ids if ids.count(i) > 1}
            if duplicates:
                raise ValueError(f"duplicate {what} {sorted(duplicates)}")


def load_world(source: str | Path | Mapping[str, Any] | World) -> World:
    """A world from a YAML/JSON file path, an already parsed mapping, or a World."""
    if isinstance(source, World):
        return source
    if isinstance(source, Mapping):
        return world_from_dict(source)
    path = Path(source)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return world_from_dict(data or {}, where=path.name)


def world_from_dict(data: Mapping[str, Any], *, where: str = "world") -> World:
    return _build(World, data, where)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise WorldError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise WorldError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    values = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise WorldError(f"{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [arg for arg in args if arg is not type(None)]
        return _convert(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise WorldError(f"{where}: expected a list")
        return tuple(_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is str:
        if isinstance(value, dict | list) or value is None:
            raise WorldError(f"{where}: expected text")
        return str(value)
    try:
        return hint(value)  # int, float
    except (TypeError, ValueError):
        raise WorldError(f"{where}: expected {hint.__name__}, got {value!r}") from None
