"""ADF adapter against scripted HTTP: request shapes, paging, and every error mapping."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from streams.adapters.adf import PipelineRun
from streams.adapters.errors import ErrorKind, HeldBack, OutsideEstate, PlatformError
from streams.adapters.http import MAX_ANSWER_BYTES
from streams.policy.throttle import ARM_WRITES

BASE = "https://arm.example"


def arm_error(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


@pytest.fixture
async def adf(adf_for, scripted):
    """``adf(*answers)`` -> (client, requests seen): ADF answers given in order."""
    clients: list[httpx.AsyncClient] = []

    def build(*answers):
        handle, seen = scripted(*answers)
        http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
        clients.append(http)
        return adf_for(BASE, http), seen

    yield build
    for http in clients:
        await http.aclose()


async def test_rerun_from_failure_is_a_recovery_create_run(adf, estate) -> None:
    client, seen = adf(httpx.Response(200, json={"runId": "new-run"}))
    assert await client.rerun_from_failure(estate.factory, "load_orders", "failed-1") == "new-run"
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == (
        f"/subscriptions/{estate.subscription}/resourceGroups/{estate.resource_group}"
        f"/providers/Microsoft.DataFactory/factories/{estate.factory}/pipelines/load_orders/createRun"
    )
    assert dict(request.url.params) == {
        "api-version": "2018-06-01",
        "referencePipelineRunId": "failed-1",
        "isRecovery": "true",
        "startFromFailure": "true",
    }
    assert request.headers["Authorization"] == "Bearer token-1"
    assert json.loads(request.content) == {}


async def test_get_run_reads_the_arm_shape(adf, estate) -> None:
    body = {
        "runId": "r2",
        "runGroupId": "r1",
        "isLatest": True,
        "pipelineName": "load_orders",
        "status": "Failed",
        "message": "Operation on target Copy failed",
        "runStart": "2018-06-16T00:37:44.6257014Z",
        "lastUpdated": "2018-06-16T00:38:12.7314495Z",
    }
    client, seen = adf(httpx.Response(200, json=body))
    run = await client.get_run(estate.factory, "r2")
    assert run == PipelineRun(
        run_id="r2",
        pipeline="load_orders",
        status="Failed",
        run_group_id="r1",
        is_latest=True,
        message="Operation on target Copy failed",
        run_start=1529109464625,
        last_updated=1529109492731,
    )
    assert run.is_final
    assert seen[0].url.path.endswith("/pipelineruns/r2")


async def test_query_runs_sends_filters_and_follows_continuation(adf, estate) -> None:
    page = lambda ids, token=None: httpx.Response(  # noqa: E731
        200,
        json={
            "value": [{"runId": i, "status": "Failed"} for i in ids],
            **({"continuationToken": token} if token else {}),
        },
    )
    client, seen = adf(page(["a", "b"], "next-1"), page(["c"]))
    after = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    runs = await client.query_runs(
        estate.factory,
        after=after,
        before=1714608000000,
        pipeline="load_orders",
        status="Failed",
        latest_only=True,
    )
    assert [r.run_id for r in runs] == ["a", "b", "c"]
    first, second = (json.loads(r.content) for r in seen)
    assert first == {
        "lastUpdatedAfter": "2024-05-01T00:00:00Z",
        "lastUpdatedBefore": "2024-05-02T00:00:00Z",
        "filters": [
            {"operand": "PipelineName", "operator": "Equals", "values": ["load_orders"]},
            {"operand": "Status", "operator": "Equals", "values": ["Failed"]},
            {"operand": "LatestOnly", "operator": "Equals", "values": ["true"]},
        ],
    }
    assert second == {**first, "continuationToken": "next-1"}


async def test_latest_in_group_picks_the_latest_attempt(adf, estate) -> None:
    runs = [
        {
            "runId": "r1",
            "runGroupId": "g",
            "isLatest": False,
            "status": "Failed",
            "runStart": "2024-05-01T00:00:00Z",
        },
        {
            "runId": "r2",
            "runGroupId": "g",
            "isLatest": True,
            "status": "InProgress",
            "runStart": "2024-05-01T01:00:00Z",
        },
    ]
    client, seen = adf(
        httpx.Response(200, json={"value": runs}), httpx.Response(200, json={"value": []})
    )
    latest = await client.latest_in_group(estate.factory, "g")
    assert latest is not None and latest.run_id == "r2"
    filters = json.loads(seen[0].content)["filters"]
    assert {"operand": "RunGroupId", "operator": "Equals", "values": ["g"]} in filters
    assert await client.latest_in_group(estate.factory, "unknown") is None


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_token_is_auth_at_once(adf, estate, status: int) -> None:
    # the credential refreshes ahead of expiry; ARM refusing a token is a human's problem
    client, seen = adf(arm_error(status, "InvalidAuthenticationToken"))
    with pytest.raises(PlatformError) as caught:
        await client.get_run(estate.factory, "r1")
    assert caught.value.kind is ErrorKind.AUTH
    assert len(seen) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed(adf, estate, status: int) -> None:
    moved = httpx.Response(status, headers={"Location": "https://login.example/sign-in"})
    client, seen = adf(moved, httpx.Response(200, json={"runId": "r1"}))
    with pytest.raises(PlatformError) as caught:
        await client.get_run(estate.factory, "r1")
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert "https://login.example/sign-in" in str(caught.value)
    assert len(seen) == 1


async def test_an_answer_past_the_cap_is_not_read(adf, estate) -> None:
    huge = httpx.Response(200, content=b"[" + b"0," * (MAX_ANSWER_BYTES // 2) + b"0]")
    client, _ = adf(huge)
    with pytest.raises(PlatformError) as caught:
        await client.get_run(estate.factory, "r1")
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert f"larger than {MAX_ANSWER_BYTES} bytes" in str(caught.value)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_empty_write_bucket_holds_the_call_back_without_sending(
    adf_for, scripted, estate
) -> None:
    clock = Clock()
    answers = [
        httpx.Response(
            200, json={"runId": "r"}, headers={"x-ms-ratelimit-remaining-subscription-writes": "1"}
        )
        for _ in range(4)
    ]
    handle, seen = scripted(*answers)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        client = adf_for(BASE, http, clock=clock)
        await client.rerun_from_failure(estate.factory, "load_orders", "r1")  # ARM: 1 left
        await client.rerun_from_failure(estate.factory, "load_orders", "r1")  # takes it
        with pytest.raises(HeldBack) as caught:
            await client.rerun_from_failure(estate.factory, "load_orders", "r1")
        assert len(seen) == 2  # nothing sent for the held-back call
        assert caught.value.kind is ErrorKind.THROTTLED
        assert caught.value.retry_after_s == pytest.approx(1 / ARM_WRITES.refill_per_s)
        # reads are a bucket of their own
        await client.get_run(estate.factory, "r1")
        clock.now += 1 / ARM_WRITES.refill_per_s
        await client.rerun_from_failure(estate.factory, "load_orders", "r1")
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("answer", "kind", "retry_after"),
    [
        (
            arm_error(429, "SubscriptionRequestsThrottled", **{"Retry-After": "17"}),
            ErrorKind.THROTTLED,
            17.0,
        ),
        (arm_error(500, "InternalServerError"), ErrorKind.TRANSIENT, None),
        (arm_error(503, "ServiceUnavailable", **{"Retry-After": "5"}), ErrorKind.TRANSIENT, 5.0),
        (httpx.ReadTimeout("slow"), ErrorKind.TRANSIENT, None),
        (httpx.ConnectError("refused"), ErrorKind.TRANSIENT, None),
        (arm_error(404, "PipelineRunNotFound"), ErrorKind.NOT_FOUND, None),
        (arm_error(409, "PipelineRunNotFinished"), ErrorKind.CONFLICT, None),
        (arm_error(400, "BadRequest"), ErrorKind.BAD_REQUEST, None),
        (httpx.Response(200, json={}), ErrorKind.TRANSIENT, None),  # createRun without runId
    ],
)
async def test_error_mapping(
    adf, estate, answer, kind: ErrorKind, retry_after: float | None
) -> None:
    client, seen = adf(answer)
    with pytest.raises(PlatformError) as caught:
        await client.rerun_from_failure(estate.factory, "load_orders", "r1")
    assert caught.value.kind is kind
    assert caught.value.retry_after_s == retry_after
    assert len(seen) == 1  # the adapter itself never retries these


async def test_unknown_factory_is_outside_the_estate(adf) -> None:
    client, seen = adf()
    with pytest.raises(OutsideEstate) as caught:
        await client.get_run("someone-elses-factory", "r1")
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert seen == []


@pytest.mark.parametrize(
    ("pipeline", "run_id", "raw_tail"),
    [
        ("../../x", "r1", b"/pipelines/..%2F..%2Fx/createRun"),
        ("a/b?c", "r1", b"/pipelines/a%2Fb%3Fc/createRun"),
        ("p#frag", "r1", b"/pipelines/p%23frag/createRun"),
    ],
)
async def test_names_from_alerts_cannot_change_the_path(
    adf, estate, pipeline, run_id, raw_tail
) -> None:
    client, seen = adf(httpx.Response(200, json={"runId": "new"}))
    await client.rerun_from_failure(estate.factory, pipeline, run_id)
    (request,) = seen
    factory_path = (
        f"/subscriptions/{estate.subscription}/resourceGroups/{estate.resource_group}"
        f"/providers/Microsoft.DataFactory/factories/{estate.factory}"
    ).encode()
    assert request.url.raw_path.split(b"?")[0] == factory_path + raw_tail
    assert request.url.params["api-version"] == "2018-06-01"
    assert "c" not in request.url.params  # "?c" stayed inside the segment


async def test_run_id_cannot_change_the_path(adf, estate) -> None:
    client, seen = adf(httpx.Response(200, json={"runId": "x", "status": "Failed"}))
    await client.get_run(estate.factory, "../../../providers/evil?api-version=1")
    assert (
        seen[0]
        .url.raw_path.split(b"?")[0]
        .endswith(b"/pipelineruns/..%2F..%2F..%2Fproviders%2Fevil%3Fapi-version%3D1")
    )
    assert seen[0].url.params.get_list("api-version") == ["2018-06-01"]


@pytest.mark.parametrize("name", ["..", ".", ""])
async def test_dot_names_are_refused_before_any_call(adf, estate, name: str) -> None:
    client, seen = adf()
    with pytest.raises(PlatformError) as caught:
        await client.rerun_from_failure(estate.factory, name, "r1")
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert seen == []


async def test_factory_names_match_case_insensitively_like_arm(adf, estate) -> None:
    client, seen = adf(httpx.Response(200, json={"runId": "r1", "status": "Failed"}))
    await client.get_run(estate.factory.upper(), "r1")  # alert resource ids come lowercased
    assert f"/factories/{estate.factory}/pipelineruns/r1" in seen[0].url.path
