"""Fixtures for adapter tests: scripted HTTP (``httpx.MockTransport``) and the simulator.

Everything is a fixture (test modules import nothing from here), because several test
directories have a ``conftest.py`` and ``import conftest`` would pick an arbitrary one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from pydantic import SecretStr

from pipemedic.simulator import SimulatorServer
from streams.adapters.adf import ADFClient, ADFConfig, FactoryRef
from streams.adapters.credentials import ClientSecretSpec, Credentials
from streams.adapters.databricks import DatabricksClient, DatabricksConfig, WorkspaceRef
from streams.adapters.http import http_client

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


class StaticCredential:
    """An ``AsyncTokenCredential`` for scripted-HTTP tests: ``token-1``, ``token-2``, ...
    one per ``get_token`` (end-to-end tests use the real azure-identity credentials)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


def sim_credentials(sim: SimulatorServer, **overrides: Any) -> Credentials:
    """The world's app registration as the estate credential ``sim-sp`` (over TLS)."""
    values: dict[str, Any] = {
        "type": "client_secret",
        "tenant_id": "sim-tenant",
        "client_id": "sim-client",
        "client_secret": "sim-secret",
        "authority": sim.https_url,
    }
    values.update(overrides)
    return Credentials({"sim-sp": ClientSecretSpec(**values)}, ca_bundle=sim.ca_file)


@pytest.fixture
async def adf_for() -> AsyncIterator[Callable[..., ADFClient]]:
    """``adf_for(target, http=None, *, timeout_s=5, clock=time.time, rates={"reads": Rate},
    **credential_overrides)``.

    ``target`` a simulator: ARM over https with the real client-secret credential, and an
    ``http_client`` trusting the run's CA when ``http`` is None. ``target`` a URL: a
    :class:`StaticCredential` (for ``httpx.MockTransport`` clients).
    """
    closing: list[Any] = []

    def build(
        target: SimulatorServer | str,
        http: httpx.AsyncClient | None = None,
        *,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        rates: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> ADFClient:
        rates = rates or {}
        if isinstance(target, str):
            url, credential = target, StaticCredential()
            credential_for: Callable[[str], Any] = lambda _name: credential  # noqa: E731
        else:
            url, credentials = target.https_url, sim_credentials(target, **overrides)
            credential_for = credentials.credential_for
            closing.append(credentials.close)
            if http is None:
                http = http_client(ca_bundle=target.ca_file, timeout_s=timeout_s)
                closing.append(http.aclose)
        assert http is not None
        config = ADFConfig(
            {FACTORY: FactoryRef(SUB, RG, "sim-sp")},
            arm_url=url,
            timeout_s=timeout_s,
            **{k: rates[k] for k in ("reads", "writes") if k in rates},
        )
        return ADFClient(config, credential_for, http, clock=clock)

    yield build
    for close in closing:
        await close()


@pytest.fixture
def databricks_for() -> Callable[..., DatabricksClient]:
    """``databricks_for(sim, token=PAT, timeout_s=5, ref=None, **options)``: a client
    for the world's workspace (``ref``: another way in than the PAT)."""
    clients: list[DatabricksClient] = []

    def build(
        sim: SimulatorServer,
        *,
        token: str = PAT,
        timeout_s: float = 5.0,
        threads: int = 16,
        ref: WorkspaceRef | None = None,
        **options: Any,
    ) -> DatabricksClient:
        ref = ref or WorkspaceRef(sim.databricks_host(WS), SecretStr(token))
        config = DatabricksConfig({WS: ref}, threads=threads, timeout_s=timeout_s)
        client = DatabricksClient(config, **options)
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
