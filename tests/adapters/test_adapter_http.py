"""The shared HTTP error mapping: status table, Retry-After forms, safe path segments."""

from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.http import (
    DEFAULT_THROTTLE_S,
    arm_quota_remaining,
    error_from_exception,
    error_from_response,
    http_client,
    json_body,
    path_segment,
    retry_after_s,
    send_json,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.BAD_REQUEST),
        (401, ErrorKind.AUTH),
        (403, ErrorKind.AUTH),
        (404, ErrorKind.NOT_FOUND),
        (408, ErrorKind.TRANSIENT),
        (409, ErrorKind.CONFLICT),
        (412, ErrorKind.BAD_REQUEST),
        (422, ErrorKind.BAD_REQUEST),
        (429, ErrorKind.THROTTLED),
        (500, ErrorKind.TRANSIENT),
        (502, ErrorKind.TRANSIENT),
        (503, ErrorKind.TRANSIENT),
        (504, ErrorKind.TRANSIENT),
    ],
)
def test_status_table(status: int, kind: ErrorKind) -> None:
    error = error_from_response(httpx.Response(status), "ADF get run")
    assert error.kind is kind
    assert error.status == status


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "17"}, 17.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": "Tue, 14 Nov 2023 22:14:00 GMT"}, 40.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:00:00 GMT"}, 0.0),  # already past
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),  # Azure's ms header wins
        ({"x-ms-retry-after-ms": "250"}, 0.25),
        ({"x-ms-ratelimit-remaining-subscription-writes": "0"}, DEFAULT_THROTTLE_S),
        ({"x-ms-ratelimit-remaining-subscription-writes": "1190"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], wait: float | None) -> None:
    assert retry_after_s(httpx.Headers(headers), now=lambda: NOW) == wait


def test_arm_quota_is_the_smallest_remaining_budget() -> None:
    headers = httpx.Headers(
        {
            "x-ms-ratelimit-remaining-subscription-reads": "14988",
            "x-ms-ratelimit-remaining-subscription-writes": "3",
        }
    )
    assert arm_quota_remaining(headers) == 3
    assert arm_quota_remaining(httpx.Headers({})) is None


def test_throttle_without_any_hint_still_waits() -> None:
    error = error_from_response(httpx.Response(429), "ADF createRun")
    assert error.kind is ErrorKind.THROTTLED
    assert error.retry_after_s == DEFAULT_THROTTLE_S


def test_service_unavailable_keeps_its_retry_after() -> None:
    error = error_from_response(httpx.Response(503, headers={"Retry-After": "4"}), "ADF")
    assert (error.kind, error.retry_after_s) == (ErrorKind.TRANSIENT, 4.0)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"error": {"code": "PipelineRunNotFound", "message": "gone"}},
            "PipelineRunNotFound: gone",
        ),
        (
            {"error": "invalid_client", "error_description": "AADSTS7000215"},
            "invalid_client: AADSTS7000215",
        ),
        ({"error_code": "INVALID_STATE", "message": "busy"}, "INVALID_STATE: busy"),
    ],
)
def test_error_message_carries_the_platform_code(body: dict, detail: str) -> None:
    error = error_from_response(httpx.Response(400, json=body), "call")
    assert str(error) == f"call: HTTP 400 {detail}"


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.PoolTimeout("busy"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("reset"),
    ],
)
def test_transport_failures_are_transient(exc: Exception) -> None:
    assert error_from_exception(exc, "call").kind is ErrorKind.TRANSIENT


def test_garbled_success_answer_is_transient() -> None:
    with pytest.raises(PlatformError) as caught:
        json_body(httpx.Response(200, content=b"<html>proxy</html>"), "call")
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert json_body(httpx.Response(200, content=b""), "call") == {}


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("load_orders", "load_orders"),
        ("../../x", "..%2F..%2Fx"),
        ("a/b?c", "a%2Fb%3Fc"),
        ("a#b%2F", "a%23b%252F"),
        ("with space", "with%20space"),
    ],
)
def test_path_segment_escapes_everything_that_could_move_the_path(value: str, segment: str) -> None:
    assert path_segment(value, "pipeline") == segment


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_dot_segments_are_refused(value: str) -> None:
    with pytest.raises(PlatformError) as caught:
        path_segment(value, "pipeline")
    assert caught.value.kind is ErrorKind.BAD_REQUEST


TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])


@TRANSPORTS
async def test_the_client_maps_refused_connections_to_transient(transport) -> None:
    async with http_client(transport=transport) as http:
        with pytest.raises(PlatformError) as caught:
            await send_json(http, "GET", "http://127.0.0.1:9/", headers={}, timeout_s=2, what="x")
    assert caught.value.kind is ErrorKind.TRANSIENT


@pytest.fixture
async def serve():
    """``await serve(handler)`` -> base URL of an aiohttp app answering every path."""
    runners: list[web.AppRunner] = []

    async def start(handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.SockSite(runner, _loopback_socket())
        await site.start()
        return f"http://127.0.0.1:{site.name.rsplit(':', 1)[1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def _loopback_socket():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@TRANSPORTS
async def test_the_client_decodes_compressed_answers_and_keeps_raw_paths(serve, transport):
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.rel_url.raw_path)
        response = web.json_response({"runId": "x" * 2000})
        response.enable_compression()
        return response

    base = await serve(answer)
    async with http_client(transport=transport) as http:
        response = await send_json(
            http,
            "POST",
            f"{base}/p/{path_segment('a/b?c', 'x')}/run",
            query={"api-version": "1"},
            body={"k": 1},
            headers={},
            timeout_s=5,
            what="x",
        )
    assert response.json() == {"runId": "x" * 2000}
    assert "content-encoding" not in response.headers  # decoded already
    assert seen == ["/p/a%2Fb%3Fc/run"]


@TRANSPORTS
async def test_an_answer_past_the_cap_fails_without_being_read_whole(serve, transport):
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse it early
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 65536)
        return response

    base = await serve(endless)
    async with http_client(transport=transport) as http:
        with pytest.raises(PlatformError) as caught:
            await send_json(
                http, "GET", base, headers={}, timeout_s=5, what="ADF", max_bytes=100_000
            )
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert "larger than 100000 bytes" in str(caught.value)


@TRANSPORTS
async def test_a_redirect_is_answered_not_followed(serve, transport):
    hits: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/elsewhere")

    base = await serve(moved)
    async with http_client(transport=transport) as http:
        response = await send_json(http, "GET", f"{base}/api", headers={}, timeout_s=5, what="x")
    assert (response.status_code, hits) == (302, ["/api"])
    error = error_from_response(response, "ADF get run")
    assert error.kind is ErrorKind.BAD_REQUEST
    assert "redirect to /elsewhere not followed" in str(error)


async def test_send_json_sends_the_body_query_and_headers_it_was_given():
    seen = []

    def platform(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"runId": "r-1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(platform)) as client:
        answer = await send_json(
            client,
            "POST",
            "https://management.azure.com/f/pipelines/a%2Fb/createRun",
            query={"api-version": "2018-06-01", "referencePipelineRunId": "r 0"},
            body={"k": 1},
            headers={"Authorization": "Bearer t"},
            timeout_s=7,
            what="x",
        )
        assert answer.json() == {"runId": "r-1"}
    (first,) = seen
    assert first.url.raw_path == (
        b"/f/pipelines/a%2Fb/createRun?api-version=2018-06-01&referencePipelineRunId=r+0"
    )
    assert first.headers["authorization"] == "Bearer t"
    assert first.extensions["timeout"] == httpx.Timeout(7).as_dict()
