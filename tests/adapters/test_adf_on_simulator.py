"""Azure AD + ADF adapters end to end against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from streams.adapters.azure_ad import TokenProvider
from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.http import shared_http_client


async def test_recovery_rerun_joins_the_group_and_ends_as_scripted(
    start_sim, http, adf_for, estate
) -> None:
    sim = await start_sim()
    adf = adf_for(sim.url, http)

    first = await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    assert (await adf.get_run(estate.factory, first)).status == "InProgress"  # polls_to_finish: 1
    done = await adf.get_run(estate.factory, first)
    assert (done.status, done.run_group_id, done.is_latest) == ("Failed", estate.failed_run, True)
    original = await adf.get_run(estate.factory, estate.failed_run)
    assert not original.is_latest

    second = await adf.rerun_from_failure(estate.factory, "load_orders", first)
    await adf.get_run(estate.factory, second)
    assert (
        await adf.get_run(estate.factory, second)
    ).status == "Succeeded"  # script: Failed, Succeeded

    latest = await adf.latest_in_group(estate.factory, estate.failed_run)
    assert latest is not None and latest.run_id == second
    group = await adf.query_runs(
        estate.factory,
        after=0,
        before=int(time.time() * 1000) + 60_000,
        run_group_id=estate.failed_run,
    )
    assert {r.run_id for r in group} == {estate.failed_run, first, second}
    assert sim.count("POST", "*/createRun") == 2
    assert sim.count(path="*/oauth2/v2.0/token") == 1  # one token for everything


async def test_paging_through_query_runs(start_sim, small_world, http, adf_for, estate) -> None:
    sim = await start_sim(small_world(adf_page_size=2))
    adf = adf_for(sim.url, http)
    for _ in range(4):
        await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    runs = await adf.query_runs(estate.factory, after=0, before=int(time.time() * 1000) + 60_000)
    assert len(runs) == 5
    assert sim.count("POST", "*/queryPipelineRuns") == 3


async def test_token_refused_by_arm_is_refreshed_transparently(
    start_sim, small_world, http, adf_for, estate
) -> None:
    world = small_world(azure_ad={"valid_for_uses": 2})
    sim = await start_sim(world)
    adf = adf_for(sim.url, http)
    for _ in range(3):
        await adf.get_run(estate.factory, estate.failed_run)
    assert sim.count(path="*/oauth2/*") == 2
    assert sim.count(path="*/pipelineruns/*", status=401) == 1
    assert sim.count(path="*/pipelineruns/*", status=200) == 3


async def test_token_expiring_early_on_the_server_is_refreshed(
    start_sim, small_world, http, adf_for, estate
) -> None:
    sim = await start_sim(small_world(azure_ad={"valid_for_s": 0.2}))
    adf = adf_for(sim.url, http)
    await adf.get_run(estate.factory, estate.failed_run)
    await asyncio.sleep(0.25)
    await adf.get_run(estate.factory, estate.failed_run)
    assert [c.status for c in sim.calls if "pipelineruns" in c.path] == [200, 401, 200]


async def test_persistent_401_is_auth(start_sim, small_world, http, adf_for, estate) -> None:
    modes = [
        {
            "path": "*/pipelineruns/*",
            "reject": {"status": 401, "code": "InvalidAuthenticationToken"},
        }
    ]
    sim = await start_sim(small_world(error_modes=modes))
    with pytest.raises(PlatformError) as caught:
        await adf_for(sim.url, http).get_run(estate.factory, estate.failed_run)
    assert caught.value.kind is ErrorKind.AUTH
    assert sim.count(path="*/pipelineruns/*") == 2


async def test_wrong_client_secret_is_auth(start_sim, http, aad_config) -> None:
    sim = await start_sim()
    tokens = TokenProvider(aad_config(sim.url, client_secret=SecretStr("wrong")), http)
    with pytest.raises(PlatformError) as caught:
        await tokens.token()
    assert caught.value.kind is ErrorKind.AUTH
    assert "wrong" not in str(sim.calls[0].body)  # the call log redacts secrets


@pytest.mark.parametrize(
    ("mode", "kind", "retry_after"),
    [
        ({"throttle": {"first_n": 1, "retry_after_s": 3}}, ErrorKind.THROTTLED, 3.0),
        ({"fail_5xx": {"first_n": 1, "status": 503}}, ErrorKind.TRANSIENT, None),
        ({"timeout": {"first_n": 1, "seconds": 5}}, ErrorKind.TRANSIENT, None),
        ({"reject": {"first_n": 1, "status": 409, "code": "Conflict"}}, ErrorKind.CONFLICT, None),
    ],
)
async def test_error_modes_surface_as_domain_errors(
    start_sim, small_world, http, adf_for, estate, mode, kind, retry_after
) -> None:
    sim = await start_sim(small_world(error_modes=[{"path": "*/createRun", **mode}]))
    adf = adf_for(sim.url, http, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(PlatformError) as caught:
        await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    assert time.monotonic() - started < 2
    assert (caught.value.kind, caught.value.retry_after_s) == (kind, retry_after)
    assert await adf.rerun_from_failure(
        estate.factory, "load_orders", estate.failed_run
    )  # budget spent


@pytest.mark.parametrize(
    ("pipeline", "run_id", "kind"),
    [
        ("no_such_pipeline", "r1", ErrorKind.NOT_FOUND),
        ("load_orders", "no-such-run", ErrorKind.NOT_FOUND),
        ("../../x", "r1", ErrorKind.NOT_FOUND),
    ],
)
async def test_simulator_validates_targets(
    start_sim, http, adf_for, estate, pipeline, run_id, kind
) -> None:
    sim = await start_sim()
    with pytest.raises(PlatformError) as caught:
        await adf_for(sim.url, http).rerun_from_failure(estate.factory, pipeline, run_id)
    assert caught.value.kind is kind


async def test_rerun_of_an_unfinished_run_is_a_conflict(start_sim, http, adf_for, estate) -> None:
    sim = await start_sim()
    adf = adf_for(sim.url, http)
    running = await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    with pytest.raises(PlatformError) as caught:
        await adf.rerun_from_failure(estate.factory, "load_orders", running)
    assert caught.value.kind is ErrorKind.CONFLICT


async def test_simulator_rejects_client_bugs(start_sim, http, adf_for, estate) -> None:
    sim = await start_sim()
    adf = adf_for(sim.url, http)
    await adf.get_run(estate.factory, estate.failed_run)  # proves the path and token are right
    path = (
        f"{sim.url}/subscriptions/{estate.subscription}/resourceGroups/{estate.resource_group}"
        f"/providers/Microsoft.DataFactory/factories/{estate.factory}/pipelineruns/{estate.failed_run}"
    )
    no_version = await http.get(path, headers={"Authorization": "Bearer whatever"})
    assert no_version.status_code == 400
    assert no_version.json()["error"]["code"] == "MissingApiVersionParameter"
    bad_token = await http.get(
        path, params={"api-version": "2018-06-01"}, headers={"Authorization": "Bearer forged"}
    )
    assert bad_token.status_code == 401
    no_token = await http.get(path, params={"api-version": "2018-06-01"})
    assert no_token.json()["error"]["code"] == "AuthenticationFailed"
    query = await http.post(
        path.rsplit("/pipelineruns", 1)[0] + "/queryPipelineRuns",
        params={"api-version": "2018-06-01"},
        headers={"Authorization": f"Bearer {await adf._tokens.token()}"},
        json={"filters": []},
    )
    assert query.status_code == 400  # lastUpdatedAfter/Before are required


async def test_shared_client_keeps_hundreds_of_calls_in_flight(
    start_sim, small_world, estate, adf_for
) -> None:
    sim = await start_sim(small_world(latency_ms=100))
    async with shared_http_client(max_connections=300) as http:
        adf = adf_for(sim.url, http)
        await adf.get_run(estate.factory, estate.failed_run)  # token + first connection
        for _ in range(2):  # the second round runs on pooled connections
            started = time.monotonic()
            await asyncio.gather(
                *(adf.get_run(estate.factory, estate.failed_run) for _ in range(300))
            )
            elapsed = time.monotonic() - started
            assert elapsed < 1.5, f"300 calls with 100 ms latency took {elapsed:.2f} s"
    assert sim.count(path="*/pipelineruns/*", status=200) == 601


async def test_shared_client_sends_escaped_names_unchanged(start_sim, estate, adf_for) -> None:
    sim = await start_sim()
    async with shared_http_client() as http:
        with pytest.raises(PlatformError) as caught:
            await adf_for(sim.url, http).rerun_from_failure(
                estate.factory, "a/b?c", estate.failed_run
            )
    assert caught.value.kind is ErrorKind.NOT_FOUND
    (call,) = sim.matching(path="/subscriptions/*")
    assert call.path.endswith("/pipelines/a%2Fb%3Fc/createRun")  # the log keeps the raw path
    assert call.query["referencePipelineRunId"] == estate.failed_run  # "?c" did not start a query
