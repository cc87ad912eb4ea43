"""Fixtures for adapter tests: scripted HTTP (``httpx.MockTransport``) and the simulator.

Everything is a fixture (test modules import nothing from here), because several test
directories have a ``conftest.py`` and ``import conftest`` would pick an arbitrary one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipemedic.simulator import SimulatorServer
from streams.adapters.adf import ADFClient, ADFConfig, FactoryRef
from streams.adapters.azure_ad import AzureADConfig, TokenProvider
from streams.adapters.databricks import DatabricksClient, DatabricksConfig, WorkspaceRef

SUB = "11111111-2222-3333-4444-555555555555"
RG = "rg-data"
FACTORY = "fac-sales"
WS = "1234567890123456"
PAT = "dapi-sim-token"
FAILED_RUN = "2f7fdb90-5df1-4b8e-ac2f-064cfa58202b"
JOB_RUN = 455644833
CLUSTER = "0923-164208-meows279"


@dataclass(frozen=True)
class Estate:
    """The ids of :func:`_small_world`."""

    subscription: str = SUB
    resource_group: str = RG
    factory: str = FACTORY
    failed_run: str = FAILED_RUN
    workspace: str = WS
    pat: str = PAT
    cluster: str = CLUSTER
    autoscale_cluster: str = "auto-1"
    job: int = 39832
    job_run: int = JOB_RUN


@pytest.fixture
def estate() -> Estate:
    return Estate()


@pytest.fixture
def small_world() -> Callable[..., dict[str, Any]]:
    """``small_world(error_modes=[...], ...)``: the test world with top-level keys replaced."""
    return _small_world


def _small_world(**extra: Any) -> dict[str, Any]:
    """One factory, one workspace; tests add ``error_modes`` or override parts."""
    world: dict[str, Any] = {
        "factories": [
            {
                "name": FACTORY,
                "subscription": SUB,
                "resource_group": RG,
                "pipelines": [
                    {"name": "load_orders", "reruns": ["Failed", "Succeeded"], "polls_to_finish": 1}
                ],
                "runs": [{"run_id": FAILED_RUN, "pipeline": "load_orders", "status": "Failed"}],
            }
        ],
        "workspaces": [
            {
                "workspace_id": WS,
                "token": PAT,
                "failing_libraries": ["pandas==9.9.9"],
                "clusters": [
                    {
                        "cluster_id": CLUSTER,
                        "state": "TERMINATED",
                        "num_workers": 4,
                        "polls_to_start": 1,
                        "termination_code": "DRIVER_UNREACHABLE",
                        "termination_type": "CLOUD_FAILURE",
                        "events": [{"type": "DRIVER_NOT_RESPONDING", "age_s": 300}],
                    },
                    {
                        "cluster_id": "auto-1",
                        "state": "RUNNING",
                        "autoscale": {"min_workers": 2, "max_workers": 8},
                        "polls_to_start": 0,
                    },
                ],
                "jobs": [
                    {
                        "job_id": 39832,
                        "name": "orders_ingest",
                        "tasks": [{"task_key": "ingest", "cluster_id": CLUSTER}],
                    }
                ],
                "runs": [
                    {
                        "run_id": JOB_RUN,
                        "job_id": 39832,
                        "result_state": "FAILED",
                        "state_message": "Task ingest failed",
                        "termination_code": "DRIVER_ERROR",
                        "termination_type": "INTERNAL_ERROR",
                        "attempt_number": 1,
                        "original_attempt_run_id": 455644800,
                        "repairs": ["FAILED", "SUCCESS"],
                        "polls_to_finish": 0,
                        "tasks": [
                            {
                                "task_key": "ingest",
                                "result_state": "FAILED",
                                "state_message": "java.lang.OutOfMemoryError",
                                "cluster_id": CLUSTER,
                            },
                            {"task_key": "report", "result_state": "SUCCESS"},
                        ],
                    }
                ],
            }
        ],
    }
    world.update(extra)
    return world


StartSim = Callable[..., Awaitable[SimulatorServer]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """``await start_sim(world_dict)`` serves that world until the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(world: dict[str, Any] | None = None) -> SimulatorServer:
            return await stack.enter_async_context(SimulatorServer(world or _small_world()))

        yield start


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _aad_config(authority_url: str, **overrides: Any) -> AzureADConfig:
    values: dict[str, Any] = {
        "tenant_id": "sim-tenant",
        "client_id": "sim-client",
        "client_secret": SecretStr("sim-secret"),
        "authority_url": authority_url,
    }
    values.update(overrides)
    return AzureADConfig(**values)


@pytest.fixture
def aad_config() -> Callable[..., AzureADConfig]:
    """``aad_config(authority_url, **overrides)``: credentials the simulator accepts."""
    return _aad_config


@pytest.fixture
def adf_for() -> Callable[..., ADFClient]:
    """``adf_for(url, http, timeout_s=5)``: an ADF client for the test factory at ``url``."""

    def build(url: str, http: httpx.AsyncClient, *, timeout_s: float = 5.0) -> ADFClient:
        tokens = TokenProvider(_aad_config(url), http)
        config = ADFConfig({FACTORY: FactoryRef(SUB, RG)}, arm_url=url, timeout_s=timeout_s)
        return ADFClient(config, tokens, http)

    return build


@pytest.fixture
def databricks_for() -> Callable[..., DatabricksClient]:
    """``databricks_for(sim, token=PAT, timeout_s=5)``: a client for the world's workspace."""
    clients: list[DatabricksClient] = []

    def build(sim: SimulatorServer, *, token: str = PAT, timeout_s: float = 5.0, threads: int = 16):
        ref = WorkspaceRef(sim.databricks_host(WS), SecretStr(token))
        client = DatabricksClient(DatabricksConfig({WS: ref}, threads=threads, timeout_s=timeout_s))
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def scripted() -> Callable[..., tuple[Handler, list[httpx.Request]]]:
    return _scripted


def _scripted(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A MockTransport handler: token requests get fresh tokens, other requests get
    ``answers`` in order (an exception is raised instead of answering). Returns the handler
    and the list of non-token requests it saw."""
    seen: list[httpx.Request] = []
    queue = list(answers)
    issued = iter(range(1, 1000))

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/v2.0/token"):
            return httpx.Response(
                200, json={"access_token": f"token-{next(issued)}", "expires_in": 3599}
            )
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handle, seen
