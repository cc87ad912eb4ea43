"""SDK calls on the event loop: each request is sent once, however often the SDK reruns."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest
import requests

from streams.adapters import wire
from streams.adapters.databricks_calls import SdkCalls, as_requests_error, connect_workspace
from streams.adapters.errors import ErrorKind, PlatformError

WS = "1234567890123456"  # the adapter conftest's world
PAT = "dapi-sim-token"


async def _workspace(sim, host: str | None = None):
    return await asyncio.to_thread(connect_workspace, host or sim.databricks_host(WS), PAT, 5.0)


async def test_each_request_is_sent_once_across_reruns(start_sim, estate) -> None:
    sim = await start_sim()
    workspace, calls = await _workspace(sim), SdkCalls(connections=4, timeout_s=5)

    def start_then_look(w):
        w.clusters.start(estate.cluster)
        return w.clusters.get(estate.cluster)

    try:
        cluster = await calls.run(workspace, start_then_look)
    finally:
        await calls.aclose()
    assert cluster.state.value == "PENDING"
    assert sim.count("POST", "*/clusters/start") == 1  # not again when the get was answered
    assert sim.count("GET", "*/clusters/get") == 1


async def test_a_request_that_changes_on_replay_is_an_error(start_sim, estate) -> None:
    sim = await start_sim()
    workspace, calls = await _workspace(sim), SdkCalls(connections=4, timeout_s=5)
    first_ids = itertools.cycle([estate.cluster, estate.autoscale_cluster])

    def unstable(w):
        return w.clusters.get(next(first_ids)), w.clusters.get(estate.autoscale_cluster)

    try:
        with pytest.raises(RuntimeError, match="changed its request on replay"):
            await calls.run(workspace, unstable)
    finally:
        await calls.aclose()


async def test_sdk_calls_outside_a_run_are_refused(start_sim, estate) -> None:
    sim = await start_sim()
    workspace = await _workspace(sim)
    with pytest.raises(RuntimeError, match="go through DatabricksClient"):
        workspace.client.clusters.get(estate.cluster)
    assert sim.count(path="*/clusters/get") == 0


async def test_threads_bound_the_calls_in_flight(
    start_sim, small_world, databricks_for, estate
) -> None:
    sim = await start_sim(small_world(latency_ms=100))
    dbx = databricks_for(sim, threads=4)
    await dbx.get_cluster(estate.workspace, estate.cluster)
    started = time.monotonic()
    await asyncio.gather(*(dbx.get_cluster(estate.workspace, estate.cluster) for _ in range(8)))
    elapsed = time.monotonic() - started
    assert 0.19 < elapsed < 1.0, f"8 calls of 100 ms over 4 connections took {elapsed:.2f} s"


async def test_the_environment_proxy_carries_the_calls(start_sim, estate, monkeypatch) -> None:
    sim = await start_sim()  # the simulator routes by path, so it can play the proxy too
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", sim.url)
    workspace = await _workspace(sim, f"http://workspace.invalid/databricks/{WS}")
    calls = SdkCalls(connections=4, timeout_s=5)
    try:
        cluster = await calls.run(workspace, lambda w: w.clusters.get(estate.cluster))
    finally:
        await calls.aclose()
    assert cluster.cluster_id == estate.cluster
    assert sim.count("GET", "*/clusters/get") == 1


async def test_tls_to_a_plain_http_port_is_transient(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()

    class PlainPort:
        @staticmethod
        def databricks_host(ws: str) -> str:
            return sim.databricks_host(ws).replace("http://", "https://")

    with pytest.raises(PlatformError) as caught:
        await databricks_for(PlainPort(), timeout_s=2).get_cluster(estate.workspace, estate.cluster)
    assert caught.value.kind is ErrorKind.TRANSIENT


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), requests.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), requests.ReadTimeout),
        (TimeoutError(), requests.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), requests.ConnectionError),
        (aiohttp.ClientPayloadError("truncated"), requests.ConnectionError),
        (aiohttp.ClientOSError(104, "reset"), requests.ConnectionError),
        (ConnectionRefusedError(111, "refused"), requests.ConnectionError),
        (ValueError("not a transport failure"), ValueError),
        (wire.ConnectTimedOut("slow"), requests.ConnectTimeout),
        (wire.PoolTimedOut("busy"), requests.ConnectTimeout),
        (wire.ReadTimedOut("quiet"), requests.ReadTimeout),
        (wire.TlsFailed("untrusted"), requests.exceptions.SSLError),
        (wire.ConnectFailed("refused"), requests.ConnectionError),
        (wire.PeerClosed("hung up"), requests.ConnectionError),
    ],
)
def test_exchange_failures_become_what_requests_raised(failure, expected) -> None:
    assert type(as_requests_error(failure)) is expected


async def test_answers_are_asked_for_uncompressed_over_the_wire_pool() -> None:
    from tests.adapters.test_wire import Scripted, ok

    cluster = b'{"cluster_id": "c-1", "state": "RUNNING"}'
    async with Scripted(lambda r: ok(cluster)) as server:
        host = f"http://127.0.0.1:{server.port}"
        workspace = await asyncio.to_thread(connect_workspace, host, PAT, 5.0)
        calls = SdkCalls(connections=2, timeout_s=5)
        try:
            got = await calls.run(workspace, lambda w: w.clusters.get("c-1"))
        finally:
            await calls.aclose()
    assert got.state.value == "RUNNING"
    [request] = [r for r in server.requests if b"/clusters/get" in r]
    assert b"\r\nAccept-Encoding: identity\r\n" in request
    assert f"\r\nAuthorization: Bearer {PAT}\r\n".encode() in request
