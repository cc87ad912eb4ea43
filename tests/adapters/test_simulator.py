"""The platform simulator itself: world files, error modes, call log, hosting modes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from importlib import resources

import aiohttp
import httpx
import pytest

from pipemedic.simulator import WorldError, load_world, start_in_thread, world_from_dict
from pipemedic.simulator.faults import ErrorModes

EXAMPLE = resources.files("pipemedic") / "data" / "worlds" / "example.yaml"


def test_example_world_loads() -> None:
    world = load_world(str(EXAMPLE))
    assert [f.name for f in world.factories] == ["fac-sales"]
    assert world.workspaces[0].failing_libraries == ("pandas==9.9.9",)


def test_json_world_files_load(tmp_path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"latency_ms": 5, "factories": [{"name": "f"}]}))
    assert load_world(path).latency_ms == 5.0


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"factoriez": []}, "unknown key(s) ['factoriez']"),
        (
            {"factories": [{"name": "f", "pipelines": [{"name": "p", "reruns": ["Done"]}]}]},
            "world.factories[0].pipelines[0]",
        ),
        (
            {"factories": [{"name": "f", "runs": [{"run_id": "r", "pipeline": "ghost"}]}]},
            "undeclared pipeline 'ghost'",
        ),
        (
            {
                "workspaces": [
                    {
                        "workspace_id": "w",
                        "token": "t",
                        "clusters": [{"cluster_id": "c", "state": "UP"}],
                    }
                ]
            },
            "cluster state 'UP'",
        ),
        (
            {
                "workspaces": [
                    {"workspace_id": "w", "token": "t", "runs": [{"run_id": 1, "job_id": 2}]}
                ]
            },
            "undeclared job 2",
        ),
        ({"latency_ms": "fast"}, "expected float"),
        ({"factories": [{"name": "f"}, {"name": "F"}]}, "duplicate factory"),
        ({"error_modes": [{"throttle": {"first": 1}}]}, "world.error_modes[0].throttle"),
    ],
)
def test_world_mistakes_are_reported_with_their_place(data, complaint) -> None:
    with pytest.raises(WorldError, match=None) as caught:
        world_from_dict(data)
    assert complaint in str(caught.value)


def test_error_mode_budgets_are_spent_in_order() -> None:
    world = world_from_dict(
        {
            "latency_ms": 7,
            "error_modes": [
                {
                    "path": "*/createRun",
                    "method": "POST",
                    "latency_ms": 50,
                    "throttle": {"first_n": 2, "retry_after_s": 3},
                    "fail_5xx": {"first_n": 1, "status": 503},
                },
                {"path": "*", "reject": {"first_n": 1, "status": 409}},
            ],
        }
    )
    modes = ErrorModes(world)
    verdicts = [modes.judge("POST", "/x/createRun") for _ in range(5)]
    statuses = [v.error.status if v.error else None for v in verdicts]
    assert statuses == [429, 429, 503, 409, None]
    assert verdicts[0].error.retry_after_s == 3
    assert {v.latency_s for v in verdicts} == {0.05}
    assert modes.judge("GET", "/x/createRun").latency_s == 0.007  # method filter: global latency
    modes.reset()
    assert modes.judge("POST", "/x/createRun").error.status == 429


async def test_latency_is_concurrent_not_serialised(start_sim, small_world) -> None:
    sim = await start_sim(small_world(latency_ms=200))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500)) as session:

        async def call() -> int:
            async with session.post(f"{sim.url}/sim-tenant/oauth2/v2.0/token", data={}) as answer:
                return answer.status

        started = time.monotonic()
        statuses = await asyncio.gather(*(call() for _ in range(400)))
        elapsed = time.monotonic() - started
    assert set(statuses) == {400}  # no grant_type: Azure AD says invalid request
    # one at a time they would take 80 s; a tenth of that proves they overlap, with room for
    # a loaded machine (this is not a speed bar)
    assert elapsed < 8.0, f"400 requests with 200 ms latency took {elapsed:.2f} s"


async def test_call_log_over_http_and_reset(start_sim, http) -> None:
    sim = await start_sim()
    token = await http.post(
        f"{sim.url}/sim-tenant/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sim-client",
            "client_secret": "sim-secret",
            "scope": "https://management.azure.com/.default",
        },
    )
    assert token.json()["expires_in"] == 3599
    await http.get(
        f"{sim.url}/databricks/1234567890123456/api/2.1/clusters/get", params={"cluster_id": "x"}
    )
    log = (await http.get(f"{sim.url}/_sim/calls")).json()
    assert log["count"] == 2
    assert log["calls"][0]["body"]["client_secret"] == "***"
    assert log["calls"][1] | {"at": 0} == {
        "method": "GET",
        "path": "/databricks/1234567890123456/api/2.1/clusters/get",
        "query": {"cluster_id": "x"},
        "body": None,
        "status": 401,
        "at": 0,
    }
    only = (
        await http.get(f"{sim.url}/_sim/calls", params={"status": 401, "path": "/databricks/*"})
    ).json()
    assert only["count"] == 1
    newest = (await http.get(f"{sim.url}/_sim/calls", params={"limit": 1})).json()
    assert (newest["count"], [c["status"] for c in newest["calls"]]) == (2, [401])
    assert (await http.get(f"{sim.url}/_sim/calls", params={"limit": 0})).json()["calls"] == []
    assert (await http.post(f"{sim.url}/_sim/reset")).json() == {"reset": True}
    assert (await http.get(f"{sim.url}/_sim/calls")).json()["count"] == 0
    assert sim.sim.azure_ad.issued == 0


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"client_id": "someone"}, 400, "unauthorized_client"),
        ({"client_secret": "nope"}, 401, "invalid_client"),
        ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope"),
    ],
)
async def test_token_endpoint_validates_requests(start_sim, http, form, status, error) -> None:
    sim = await start_sim()
    good = {
        "grant_type": "client_credentials",
        "client_id": "sim-client",
        "client_secret": "sim-secret",
        "scope": "https://management.azure.com/.default",
    }
    answer = await http.post(f"{sim.url}/sim-tenant/oauth2/v2.0/token", data=good | form)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    wrong_tenant = await http.post(f"{sim.url}/other-tenant/oauth2/v2.0/token", data=good)
    assert "AADSTS90002" in wrong_tenant.json()["error_description"]


async def test_databricks_requests_are_validated(start_sim, http) -> None:
    sim = await start_sim()
    host = sim.databricks_host("1234567890123456")
    auth = {"Authorization": "Bearer dapi-sim-token"}
    unknown = await http.get(f"{host}/api/2.1/clusters/list", headers=auth)
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    other_ws = await http.get(
        f"{host}/api/2.1/clusters/get",
        params={"cluster_id": "0923-164208-meows279"},
        headers=auth | {"X-Databricks-Workspace-Id": "42"},
    )
    assert other_ws.status_code == 400
    garbled = await http.post(f"{host}/api/2.1/clusters/start", headers=auth, content=b"{not json")
    assert garbled.status_code == 400
    metadata = await http.get(f"{host}/.well-known/databricks-config")
    assert metadata.json()["workspace_id"] == "1234567890123456"


def test_thread_hosted_simulator_for_sync_callers() -> None:
    handle = start_in_thread(str(EXAMPLE))
    try:
        with httpx.Client() as http:
            answer = http.get(
                f"{handle.databricks_host('1234567890123456')}/api/2.1/clusters/get",
                params={"cluster_id": "0923-164208-meows279"},
                headers={"Authorization": "Bearer dapi-sim-token"},
            )
            assert answer.json()["state"] == "TERMINATED"
        assert handle.count("GET", "*/clusters/get") == 1
        handle.reset()
        assert handle.calls == []
    finally:
        handle.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.url + "/_sim/calls")


def test_standalone_server(tmp_path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pipemedic.simulator", "--world", str(EXAMPLE), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "serving" in line, line
        url = line.strip().rsplit(" ", 1)[-1]
        assert httpx.get(f"{url}/_sim/calls").json() == {"count": 0, "calls": []}
    finally:
        process.terminate()
        assert process.wait(10) == 0
