"""azure-identity + ADF adapter end to end against the simulator, over TLS with the run's CA."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.adapters.errors import ErrorKind, HeldBack, PlatformError
from streams.adapters.http import http_client
from streams.policy.throttle import Rate


async def test_recovery_rerun_joins_the_group_and_ends_as_scripted(
    start_sim, http, adf_for, estate
) -> None:
    sim = await start_sim()
    adf = adf_for(sim)

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
    adf = adf_for(sim)
    for _ in range(4):
        await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    runs = await adf.query_runs(estate.factory, after=0, before=int(time.time() * 1000) + 60_000)
    assert len(runs) == 5
    assert sim.count("POST", "*/queryPipelineRuns") == 3


async def test_a_token_arm_stops_accepting_is_auth_without_a_retry_loop(
    start_sim, small_world, adf_for, estate
) -> None:
    sim = await start_sim(small_world(azure_ad={"valid_for_uses": 2}))
    adf = adf_for(sim)
    for _ in range(2):
        await adf.get_run(estate.factory, estate.failed_run)
    with pytest.raises(PlatformError) as caught:
        await adf.get_run(estate.factory, estate.failed_run)
    assert caught.value.kind is ErrorKind.AUTH
    assert sim.count(path="*/oauth2/*") == 1  # the library's token was still valid to it
    assert [c.status for c in sim.matching(path="*/pipelineruns/*")] == [200, 200, 401]


async def test_persistent_401_is_auth(start_sim, small_world, adf_for, estate) -> None:
    modes = [
        {
            "path": "*/pipelineruns/*",
            "reject": {"status": 401, "code": "InvalidAuthenticationToken"},
        }
    ]
    sim = await start_sim(small_world(error_modes=modes))
    with pytest.raises(PlatformError) as caught:
        await adf_for(sim).get_run(estate.factory, estate.failed_run)
    assert caught.value.kind is ErrorKind.AUTH
    assert sim.count(path="*/pipelineruns/*") == 1


async def test_wrong_client_secret_is_auth_and_one_token_request_per_call(
    start_sim, adf_for, estate
) -> None:
    sim = await start_sim()
    adf = adf_for(sim, client_secret="wrong")
    for calls in (1, 2):
        with pytest.raises(PlatformError) as caught:
            await adf.get_run(estate.factory, estate.failed_run)
        assert caught.value.kind is ErrorKind.AUTH
        assert "invalid_client" in str(caught.value)
        assert sim.count(path="*/oauth2/v2.0/token", status=401) == calls
    # concurrent calls share one token request, and nothing reached ARM
    for _ in range(2):
        results = await asyncio.gather(
            *(adf.get_run(estate.factory, estate.failed_run) for _ in range(50)),
            return_exceptions=True,
        )
        assert all(isinstance(r, PlatformError) and r.kind is ErrorKind.AUTH for r in results)
    assert sim.count(path="*/oauth2/v2.0/token") == 4
    assert sim.count(path="/subscriptions/*") == 0
    assert "wrong" not in str(sim.calls[0].body)  # the call log redacts secrets


async def test_arm_budget_headers_slow_us_down_before_arm_says_no(
    start_sim, small_world, adf_for, estate
) -> None:
    sim = await start_sim(small_world(arm_limits={"reads": {"capacity": 3, "refill_per_s": 1}}))
    now = [1000.0]
    adf = adf_for(sim, clock=lambda: now[0])
    for _ in range(3):
        await adf.get_run(estate.factory, estate.failed_run)
    reads = [c for c in sim.matching(path="*/pipelineruns/*")]
    assert [c.status for c in reads] == [200, 200, 200]
    with pytest.raises(HeldBack):  # ARM said 0 left: our bucket is empty too
        await adf.get_run(estate.factory, estate.failed_run)
    assert sim.count(path="*/pipelineruns/*") == 3
    await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)  # writes


async def test_an_empty_arm_bucket_answers_429_with_retry_after(
    start_sim, small_world, adf_for, estate
) -> None:
    sim = await start_sim(small_world(arm_limits={"writes": {"capacity": 1, "refill_per_s": 0.5}}))
    await adf_for(sim).rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    with pytest.raises(PlatformError) as caught:  # another client, with a full bucket
        await adf_for(sim).rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    assert caught.value.kind is ErrorKind.THROTTLED
    assert caught.value.retry_after_s == 2.0
    (throttled,) = sim.matching(path="*/createRun", status=429)
    assert throttled.method == "POST"


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
    adf = adf_for(sim, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(PlatformError) as caught:
        await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    assert time.monotonic() - started < 2
    assert (caught.value.kind, caught.value.retry_after_s) == (kind, retry_after)
    # a 429 also said the subscription has no writes left: this client now holds back, so
    # another one shows that the error mode's budget is spent
    assert await adf_for(sim).rerun_from_failure(
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
        await adf_for(sim).rerun_from_failure(estate.factory, pipeline, run_id)
    assert caught.value.kind is kind


async def test_rerun_of_an_unfinished_run_is_a_conflict(start_sim, http, adf_for, estate) -> None:
    sim = await start_sim()
    adf = adf_for(sim)
    running = await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    with pytest.raises(PlatformError) as caught:
        await adf.rerun_from_failure(estate.factory, "load_orders", running)
    assert caught.value.kind is ErrorKind.CONFLICT


async def test_simulator_rejects_client_bugs(start_sim, http, adf_for, estate) -> None:
    sim = await start_sim()
    adf = adf_for(sim)
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
    form = {
        "grant_type": "client_credentials",
        "client_id": "sim-client",
        "client_secret": "sim-secret",
    }
    databricks = await http.post(
        f"{sim.url}/sim-tenant/oauth2/v2.0/token",
        data={**form, "scope": "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"},
    )
    wrong_audience = await http.get(
        path,
        params={"api-version": "2018-06-01"},
        headers={"Authorization": f"Bearer {databricks.json()['access_token']}"},
    )
    assert wrong_audience.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    arm = await http.post(
        f"{sim.url}/sim-tenant/oauth2/v2.0/token",
        data={**form, "scope": "https://management.azure.com/.default"},
    )
    query = await http.post(
        path.rsplit("/pipelineruns", 1)[0] + "/queryPipelineRuns",
        params={"api-version": "2018-06-01"},
        headers={"Authorization": f"Bearer {arm.json()['access_token']}"},
        json={"filters": []},
    )
    assert query.status_code == 400  # lastUpdatedAfter/Before are required


async def test_the_client_keeps_hundreds_of_calls_in_flight(
    start_sim, small_world, estate, adf_for
) -> None:
    limits = {"reads": {"capacity": 1000, "refill_per_s": 100}}
    sim = await start_sim(small_world(latency_ms=100, arm_limits=limits))
    async with http_client(max_connections=300, ca_bundle=sim.ca_file) as http:
        adf = adf_for(sim, http, rates={"reads": Rate(1000, 100)})
        await adf.get_run(estate.factory, estate.failed_run)  # token + first connection
        # serialised, a round would take 30 s; the bounds leave room for a loaded machine
        # (this process also runs the simulator)
        for pooled in (False, True):  # the first round also makes 299 TLS connections
            started = time.monotonic()
            await asyncio.gather(
                *(adf.get_run(estate.factory, estate.failed_run) for _ in range(300))
            )
            elapsed = time.monotonic() - started
            # 6.2 s seen for the first round with the whole suite on 2 cores: half of serial
            # still tells calls in flight together from calls one after another
            assert elapsed < (8 if pooled else 15), f"300 calls (100 ms latency): {elapsed:.2f} s"
    assert sim.count(path="*/pipelineruns/*", status=200) == 601


async def test_the_client_sends_escaped_names_unchanged(start_sim, estate, adf_for) -> None:
    sim = await start_sim()
    with pytest.raises(PlatformError) as caught:
        await adf_for(sim).rerun_from_failure(estate.factory, "a/b?c", estate.failed_run)
    assert caught.value.kind is ErrorKind.NOT_FOUND
    (call,) = sim.matching(path="/subscriptions/*")
    assert call.path.endswith("/pipelines/a%2Fb%3Fc/createRun")  # the log keeps the raw path
    assert call.query["referencePipelineRunId"] == estate.failed_run  # "?c" did not start a query


async def test_the_query_actions_spend_reads_as_arm_counts_them(
    start_sim, small_world, adf_for, estate
) -> None:
    # PipelineRuns_QueryByFactory answers with x-ms-ratelimit-remaining-subscription-reads
    sim = await start_sim(small_world(arm_limits={"writes": {"capacity": 1, "refill_per_s": 0.01}}))
    now = [1000.0]
    adf = adf_for(sim, clock=lambda: now[0])
    await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    with pytest.raises(HeldBack):  # ARM said 0 writes left: our writes bucket is empty too
        await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    for _ in range(5):  # queries go on: they spend reads
        await adf.query_runs(estate.factory, after=0, before=2_000_000_000_000)
    assert sim.count(path="*/queryPipelineRuns", status=200) == 5
