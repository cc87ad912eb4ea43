"""Databricks adapter: the real databricks-sdk against the simulator over HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
import requests

from streams.adapters.databricks import ClusterEvent, JobRun, TaskRun, platform_error
from streams.adapters.errors import ErrorKind, HeldBack, OutsideEstate, PlatformError
from streams.policy.throttle import Rate


async def test_cluster_start_goes_through_pending(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    cluster = await dbx.get_cluster(estate.workspace, estate.cluster)
    assert (cluster.state, cluster.num_workers) == ("TERMINATED", 4)
    assert (cluster.termination_code, cluster.termination_type) == (
        "DRIVER_UNREACHABLE",
        "CLOUD_FAILURE",
    )

    await dbx.start_cluster(estate.workspace, estate.cluster)  # returns without waiting
    states = [(await dbx.get_cluster(estate.workspace, estate.cluster)).state for _ in range(2)]
    assert states == ["PENDING", "RUNNING"]  # polls_to_start: 1
    assert sim.count("POST", "*/api/2.1/clusters/start") == 1


async def test_autoscale_bounds_and_resize(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    cluster = await dbx.get_cluster(estate.workspace, estate.autoscale_cluster)
    assert (cluster.autoscale_min, cluster.autoscale_max) == (2, 8)
    await dbx.resize_cluster(estate.workspace, estate.autoscale_cluster, autoscale=(4, 16))
    cluster = await dbx.get_cluster(estate.workspace, estate.autoscale_cluster)
    assert (cluster.state, cluster.autoscale_min, cluster.autoscale_max) == ("RUNNING", 4, 16)
    await dbx.resize_cluster(estate.workspace, estate.autoscale_cluster, 6)
    assert (await dbx.get_cluster(estate.workspace, estate.autoscale_cluster)).num_workers == 6
    with pytest.raises(PlatformError) as caught:
        await dbx.resize_cluster(estate.workspace, estate.autoscale_cluster)
    assert caught.value.kind is ErrorKind.BAD_REQUEST


@pytest.mark.parametrize("operation", ["resize", "restart"])
async def test_cluster_that_is_not_running_is_a_conflict(
    start_sim, databricks_for, estate, operation
) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    with pytest.raises(PlatformError) as caught:
        if operation == "resize":
            await dbx.resize_cluster(estate.workspace, estate.cluster, 8)
        else:
            await dbx.restart_cluster(estate.workspace, estate.cluster)
    assert caught.value.kind is ErrorKind.CONFLICT
    assert "INVALID_STATE" in str(caught.value)


async def test_library_fallback(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    ws, cluster = estate.workspace, estate.autoscale_cluster
    await dbx.install_library(ws, cluster, "pandas==9.9.9")
    (failed,) = await dbx.library_statuses(ws, cluster)
    assert (failed.library, failed.status) == ("pandas==9.9.9", "FAILED")
    assert "Could not find a version" in failed.messages[0]

    await dbx.uninstall_library(ws, cluster, "pandas==9.9.9")
    await dbx.install_library(ws, cluster, "pandas==2.2.0")
    statuses = {s.library: s.status for s in await dbx.library_statuses(ws, cluster)}
    assert statuses == {"pandas==9.9.9": "UNINSTALL_ON_RESTART", "pandas==2.2.0": "INSTALLED"}
    await dbx.restart_cluster(ws, cluster)
    assert [s.library for s in await dbx.library_statuses(ws, cluster)] == ["pandas==2.2.0"]


async def test_cluster_events_newest_first_filtered(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    await dbx.start_cluster(estate.workspace, estate.cluster)
    events = await dbx.cluster_events(estate.workspace, estate.cluster)
    assert [e.type for e in events] == ["STARTING", "DRIVER_NOT_RESPONDING"]
    assert all(isinstance(e, ClusterEvent) and e.timestamp > 0 for e in events)
    only = await dbx.cluster_events(
        estate.workspace, estate.cluster, ["DRIVER_NOT_RESPONDING"], limit=1
    )
    assert [e.type for e in only] == ["DRIVER_NOT_RESPONDING"]
    with pytest.raises(PlatformError) as caught:
        await dbx.cluster_events(estate.workspace, estate.cluster, ["NOT_AN_EVENT"])
    assert caught.value.kind is ErrorKind.BAD_REQUEST


async def test_cluster_events_stop_at_the_limit(
    start_sim, small_world, databricks_for, estate
) -> None:
    world = small_world()
    world["workspaces"][0]["clusters"][0]["events"] = [
        {"type": "NODES_LOST", "age_s": i} for i in range(1, 31)
    ]
    sim = await start_sim(world)
    events = await databricks_for(sim).cluster_events(estate.workspace, estate.cluster, limit=10)
    assert len(events) == 10
    assert sim.count(path="*/clusters/events") == 1  # the SDK iterator was not drained


async def test_get_run_reads_everything_the_policy_needs(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    run = await databricks_for(sim).get_run(estate.workspace, str(estate.job_run))
    assert isinstance(run, JobRun)
    assert (run.run_id, run.job_id, run.life_cycle_state, run.result_state) == (
        estate.job_run,
        estate.job,
        "TERMINATED",
        "FAILED",
    )
    assert (run.termination_code, run.termination_type) == ("DRIVER_ERROR", "INTERNAL_ERROR")
    assert (run.original_attempt_run_id, run.attempt_number, run.latest_repair_id) == (
        455644800,
        1,
        None,
    )
    ingest, report = run.tasks
    assert isinstance(ingest, TaskRun)
    assert (ingest.task_key, ingest.result_state, ingest.state_message, ingest.cluster_id) == (
        "ingest",
        "FAILED",
        "java.lang.OutOfMemoryError",
        estate.cluster,
    )
    assert report.result_state == "SUCCESS"
    (call,) = sim.matching("GET", "*/jobs/runs/get")
    assert call.query == {"include_history": "true", "run_id": str(estate.job_run)}


async def test_repair_chain_passes_the_latest_repair_id(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    ws, run_id = estate.workspace, estate.job_run
    first = await dbx.repair_run(ws, run_id, None)
    run = await dbx.get_run(ws, run_id)  # polls_to_finish: 0, script: FAILED, SUCCESS
    assert (run.result_state, run.latest_repair_id) == ("FAILED", first)
    assert [t.task_key for t in run.tasks if t.attempt_number == 1] == [
        "ingest"
    ]  # only the failed task

    with pytest.raises(PlatformError) as missing:
        await dbx.repair_run(ws, run_id, None)
    assert missing.value.kind is ErrorKind.BAD_REQUEST
    with pytest.raises(PlatformError) as stale:
        await dbx.repair_run(ws, run_id, first - 1)
    assert stale.value.kind is ErrorKind.CONFLICT

    second = await dbx.repair_run(ws, run_id, first)
    run = await dbx.get_run(ws, run_id)
    assert (run.result_state, run.latest_repair_id, run.termination_code) == (
        "SUCCESS",
        second,
        "SUCCESS",
    )
    (body,) = [c.body for c in sim.calls if c.path.endswith("/runs/repair") and c.status == 200][
        -1:
    ]
    assert body == {"run_id": run_id, "rerun_all_failed_tasks": True, "latest_repair_id": first}


async def test_run_now_is_idempotent_per_token(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    first = await dbx.run_now(estate.workspace, estate.job, "alert-1:1")
    assert await dbx.run_now(estate.workspace, estate.job, "alert-1:1") == first
    assert await dbx.run_now(estate.workspace, estate.job, "alert-1:2") != first
    run = await dbx.get_run(estate.workspace, first)
    assert (run.job_id, run.life_cycle_state) == (estate.job, "RUNNING")
    assert (await dbx.get_run(estate.workspace, first)).result_state == "SUCCESS"


@pytest.mark.parametrize(
    ("mode", "kind", "retry_after"),
    [
        ({"throttle": {"retry_after_s": 30}}, ErrorKind.THROTTLED, 30.0),
        ({"reject": {"status": 429, "code": "REQUEST_LIMIT_EXCEEDED"}}, ErrorKind.THROTTLED, 1.0),
        ({"fail_5xx": {"status": 500}}, ErrorKind.TRANSIENT, None),
        ({"fail_5xx": {"status": 503}}, ErrorKind.TRANSIENT, 1.0),
        ({"fail_5xx": {"status": 502}}, ErrorKind.TRANSIENT, None),
        ({"reject": {"status": 504, "code": "DEADLINE_EXCEEDED"}}, ErrorKind.TRANSIENT, None),
        ({"reject": {"status": 500, "message": "Unexpected error"}}, ErrorKind.TRANSIENT, None),
        ({"reject": {"status": 409, "code": "RESOURCE_CONFLICT"}}, ErrorKind.CONFLICT, None),
        ({"reject": {"status": 409, "code": "ABORTED"}}, ErrorKind.CONFLICT, None),
        ({"reject": {"status": 400, "code": "INVALID_STATE"}}, ErrorKind.CONFLICT, None),
        (
            {"reject": {"status": 400, "code": "INVALID_PARAMETER_VALUE"}},
            ErrorKind.BAD_REQUEST,
            None,
        ),
        ({"reject": {"status": 400, "code": "BAD_REQUEST"}}, ErrorKind.BAD_REQUEST, None),
        ({"reject": {"status": 404, "code": "RESOURCE_DOES_NOT_EXIST"}}, ErrorKind.NOT_FOUND, None),
        ({"reject": {"status": 401, "code": "UNAUTHENTICATED"}}, ErrorKind.AUTH, None),
        ({"reject": {"status": 403, "code": "PERMISSION_DENIED"}}, ErrorKind.AUTH, None),
        ({"timeout": {"seconds": 5}}, ErrorKind.TRANSIENT, None),
    ],
)
async def test_error_mapping_without_waiting_inside_the_sdk(
    start_sim, small_world, databricks_for, estate, mode, kind, retry_after
) -> None:
    sim = await start_sim(small_world(error_modes=[{"path": "*/clusters/get", **mode}]))
    dbx = databricks_for(sim, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(PlatformError) as caught:
        await dbx.get_cluster(estate.workspace, estate.cluster)
    assert time.monotonic() - started < 2, "the SDK slept on a retry"
    assert (caught.value.kind, caught.value.retry_after_s) == (kind, retry_after)
    for _ in range(50):  # a hung call is logged once the server notices the client left
        if sim.count(path="*/clusters/get"):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    assert sim.count(path="*/clusters/get") == 1  # no SDK-internal retry either


async def test_unreachable_workspace_is_transient_and_fast(databricks_for) -> None:
    class Nowhere:  # a closed loopback port
        @staticmethod
        def databricks_host(ws: str) -> str:
            return f"http://127.0.0.1:9/databricks/{ws}"

    started = time.monotonic()
    with pytest.raises(PlatformError) as caught:
        await databricks_for(Nowhere(), timeout_s=0.5).get_cluster("1234567890123456", "c")
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda dbx, e: dbx.get_cluster(e.workspace, "no-such-cluster"), ErrorKind.NOT_FOUND),
        (lambda dbx, e: dbx.start_cluster(e.workspace, "no-such-cluster"), ErrorKind.NOT_FOUND),
        (lambda dbx, e: dbx.get_run(e.workspace, 1), ErrorKind.NOT_FOUND),
        (lambda dbx, e: dbx.run_now(e.workspace, 1, "t"), ErrorKind.NOT_FOUND),
        (
            lambda dbx, e: dbx.resize_cluster(e.workspace, e.autoscale_cluster, -1),
            ErrorKind.BAD_REQUEST,
        ),
        (lambda dbx, e: dbx.run_now(e.workspace, e.job, "x" * 65), ErrorKind.BAD_REQUEST),
    ],
)
async def test_simulator_validates_like_databricks(
    start_sim, databricks_for, estate, call, kind
) -> None:
    sim = await start_sim()
    with pytest.raises(PlatformError) as caught:
        await call(databricks_for(sim), estate)
    assert caught.value.kind is kind


async def test_wrong_token_is_auth_and_never_shown(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim, token="dapi-wrong-secret")
    with pytest.raises(PlatformError) as caught:
        await dbx.get_cluster(estate.workspace, estate.cluster)
    assert caught.value.kind is ErrorKind.AUTH
    assert "dapi-wrong-secret" not in str(caught.value) + repr(dbx._config)


async def test_unknown_workspace_is_outside_the_estate(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    with pytest.raises(OutsideEstate):
        await databricks_for(sim).get_cluster("999", estate.cluster)
    assert sim.calls == []


async def test_calls_run_concurrently_on_one_client_per_workspace(
    start_sim, small_world, databricks_for, estate
) -> None:
    sim = await start_sim(small_world(latency_ms=100))
    dbx = databricks_for(sim, threads=64, reads=Rate(capacity=200, refill_per_s=100))
    await dbx.get_cluster(estate.workspace, estate.cluster)  # builds the workspace client once
    started = time.monotonic()
    await asyncio.gather(
        *(dbx.get_cluster(estate.workspace, estate.autoscale_cluster) for _ in range(128))
    )
    elapsed = time.monotonic() - started
    # one after another they take 12.8 s; on 64 threads ~0.2 s. A loaded machine (the suite
    # runs in two processes) stretches that, not the difference: this checks concurrency,
    # speed is bench/databricks_calls.py's business
    assert elapsed < 4.0, f"128 calls with 100 ms latency on 64 threads took {elapsed:.2f} s"
    assert sim.count(path="*/.well-known/databricks-config") == 1  # one client per workspace


async def test_get_run_json_is_the_rest_shape(start_sim, databricks_for, estate) -> None:
    sim = await start_sim()
    dbx = databricks_for(sim)
    await dbx.repair_run(estate.workspace, estate.job_run, None)
    run = await dbx.get_run_json(estate.workspace, estate.job_run)
    assert run["run_id"] == estate.job_run
    assert run["state"]["result_state"] == "FAILED"
    assert run["status"]["termination_details"]["code"] == "DRIVER_ERROR"
    assert [item["type"] for item in run["repair_history"]] == ["ORIGINAL", "REPAIR"]
    assert run["tasks"][0]["cluster_instance"]["cluster_id"] == estate.cluster


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (requests.exceptions.JSONDecodeError("garbled", "<html>", 0), ErrorKind.TRANSIENT),
        (requests.ConnectionError("reset"), ErrorKind.TRANSIENT),
        (
            ValueError("validate: more than one authorization method configured"),
            ErrorKind.BAD_REQUEST,
        ),
        (RuntimeError("surprise"), ErrorKind.TRANSIENT),
    ],
)
def test_failures_outside_the_http_answer(exc: Exception, kind: ErrorKind) -> None:
    assert platform_error(exc, "Databricks workspace w").kind is kind


@pytest.mark.parametrize(
    "call",
    [
        lambda dbx, e: dbx.get_cluster(e.workspace, "../../api/2.0/secrets/list"),
        lambda dbx, e: dbx.get_cluster(e.workspace, "0923-164208-meows279?x=1"),
        lambda dbx, e: dbx.start_cluster(e.workspace, "0923-164208 meows279"),
        lambda dbx, e: dbx.install_library(e.workspace, "", "pandas==2.2.0"),
        lambda dbx, e: dbx.cluster_events(e.workspace, "-0923-164208-meows279"),
        lambda dbx, e: dbx.get_run(e.workspace, "not-a-number"),
        lambda dbx, e: dbx.get_run(e.workspace, "455644833/../1"),
        lambda dbx, e: dbx.get_run(e.workspace, "0"),
        lambda dbx, e: dbx.get_run(e.workspace, -1),
        lambda dbx, e: dbx.get_run(e.workspace, True),
        lambda dbx, e: dbx.get_run(e.workspace, "1_000"),
        lambda dbx, e: dbx.get_run(e.workspace, " 455644833"),
        lambda dbx, e: dbx.get_run(e.workspace, "9" * 20),
        lambda dbx, e: dbx.repair_run(e.workspace, "455644833\n", None),
        lambda dbx, e: dbx.run_now(e.workspace, "39832&run_id=1", "t"),
        lambda dbx, e: dbx.get_cluster("12345/../../x", e.cluster),
        lambda dbx, e: dbx.get_run_json("", e.job_run),
    ],
)
async def test_ids_that_cannot_exist_make_no_call(start_sim, databricks_for, estate, call) -> None:
    sim = await start_sim()
    with pytest.raises(PlatformError) as caught:
        await call(databricks_for(sim), estate)
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert "cannot exist" in str(caught.value)
    assert sim.calls == []  # not even the client build's host probe


async def test_an_empty_workspace_bucket_holds_back_without_calling(
    start_sim, databricks_for, estate
) -> None:
    sim = await start_sim()
    now = [100.0]
    dbx = databricks_for(
        sim,
        writes=Rate(capacity=2, refill_per_s=0.5),
        reads=Rate(capacity=1, refill_per_s=1),
        monotonic=lambda: now[0],
    )
    await dbx.start_cluster(estate.workspace, estate.cluster)
    await dbx.start_cluster(estate.workspace, estate.cluster)
    with pytest.raises(HeldBack) as held:
        await dbx.start_cluster(estate.workspace, estate.cluster)
    assert (held.value.kind, held.value.retry_after_s) == (ErrorKind.THROTTLED, 2.0)
    assert sim.count("POST", "*/clusters/start") == 2
    # reads have their own bucket: a write burst does not starve status checks
    assert (await dbx.get_cluster(estate.workspace, estate.cluster)).state == "PENDING"
    now[0] += 2.0
    await dbx.start_cluster(estate.workspace, estate.cluster)
    assert sim.count("POST", "*/clusters/start") == 3


async def test_a_429_holds_back_the_calls_behind_it(
    start_sim, small_world, databricks_for, estate
) -> None:
    sim = await start_sim(
        small_world(error_modes=[{"path": "*/clusters/get", "throttle": {"first_n": 1}}])
    )
    now = [100.0]
    dbx = databricks_for(sim, reads=Rate(capacity=50, refill_per_s=10), monotonic=lambda: now[0])
    with pytest.raises(PlatformError) as throttled:
        await dbx.get_cluster(estate.workspace, estate.cluster)
    assert not isinstance(throttled.value, HeldBack)
    assert (throttled.value.kind, throttled.value.retry_after_s) == (ErrorKind.THROTTLED, 1.0)
    with pytest.raises(HeldBack):
        await dbx.get_cluster(estate.workspace, estate.cluster)
    assert sim.count(path="*/clusters/get") == 1
    now[0] += 0.2
    await dbx.get_cluster(estate.workspace, estate.cluster)
    assert sim.count(path="*/clusters/get") == 2
