"""Azure AD tokens: one fetch shared by concurrent callers, cached, refreshed, invalidated."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from streams.adapters.azure_ad import AzureADConfig, TokenProvider
from streams.adapters.errors import ErrorKind, PlatformError

CONFIG = AzureADConfig(
    tenant_id="tenant-1",
    client_id="client-1",
    client_secret=SecretStr("s3cr3t-value"),
    authority_url="https://login.example",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_server(*, expires_in: int = 3600, delay_s: float = 0.0):
    requests: list[httpx.Request] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        await asyncio.sleep(delay_s)
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "expires_in": expires_in,
                "access_token": f"t{len(requests)}",
            },
        )

    return handle, requests


async def test_fetches_client_credentials_token_for_the_arm_scope() -> None:
    handle, requests = token_server()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        assert await TokenProvider(CONFIG, http).token() == "t1"
    (request,) = requests
    assert str(request.url) == "https://login.example/tenant-1/oauth2/v2.0/token"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": ["client-1"],
        "client_secret": ["s3cr3t-value"],
        "scope": ["https://management.azure.com/.default"],
    }


async def test_concurrent_callers_share_one_fetch() -> None:
    handle, requests = token_server(delay_s=0.05)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        tokens = TokenProvider(CONFIG, http)
        values = await asyncio.gather(*(tokens.token() for _ in range(200)))
    assert set(values) == {"t1"}
    assert len(requests) == 1


async def test_cached_until_shortly_before_expiry() -> None:
    clock = Clock()
    handle, requests = token_server(expires_in=3600)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        tokens = TokenProvider(CONFIG, http, clock=clock)
        assert await tokens.token() == "t1"
        clock.now += 3600 - 301  # refresh margin is 300 s
        assert await tokens.token() == "t1"
        clock.now += 2
        assert await tokens.token() == "t2"
    assert len(requests) == 2


async def test_short_lived_tokens_refresh_at_half_their_life() -> None:
    clock = Clock()
    handle, _ = token_server(expires_in=10)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        tokens = TokenProvider(CONFIG, http, clock=clock)
        await tokens.token()
        clock.now += 4.9
        assert await tokens.token() == "t1"
        clock.now += 0.2
        assert await tokens.token() == "t2"


async def test_invalidate_only_drops_the_stale_token() -> None:
    handle, requests = token_server()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        tokens = TokenProvider(CONFIG, http)
        stale = await tokens.token()
        tokens.invalidate(stale)
        fresh = await tokens.token()
        tokens.invalidate(stale)  # a late 401 with the old token must not drop the new one
        assert await tokens.token() == fresh == "t2"
        tokens.invalidate()
        assert await tokens.token() == "t3"
    assert len(requests) == 3


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (
            httpx.Response(
                401, json={"error": "invalid_client", "error_description": "AADSTS7000215"}
            ),
            ErrorKind.AUTH,
        ),
        (
            httpx.Response(
                400, json={"error": "unauthorized_client", "error_description": "AADSTS700016"}
            ),
            ErrorKind.AUTH,
        ),
        (
            httpx.Response(
                400, json={"error": "invalid_request", "error_description": "AADSTS90002"}
            ),
            ErrorKind.BAD_REQUEST,
        ),
        (httpx.Response(429, headers={"Retry-After": "7"}), ErrorKind.THROTTLED),
        (httpx.Response(503), ErrorKind.TRANSIENT),
        (httpx.Response(200, json={"token_type": "Bearer"}), ErrorKind.TRANSIENT),
    ],
)
async def test_token_endpoint_failures(answer: httpx.Response, kind: ErrorKind) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: answer)) as http:
        with pytest.raises(PlatformError) as caught:
            await TokenProvider(CONFIG, http).token()
    assert caught.value.kind is kind


async def test_failed_fetch_reaches_every_waiter_and_is_not_cached() -> None:
    calls = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        if calls == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"access_token": "ok", "expires_in": 3600})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        tokens = TokenProvider(CONFIG, http)
        results = await asyncio.gather(*(tokens.token() for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, PlatformError) and r.kind is ErrorKind.TRANSIENT for r in results)
        assert await tokens.token() == "ok"
    assert calls == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    handle, requests = token_server(delay_s=0.05)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        tokens = TokenProvider(CONFIG, http)
        impatient = asyncio.create_task(tokens.token())
        patient = asyncio.create_task(tokens.token())
        await asyncio.sleep(0.01)
        impatient.cancel()
        assert await patient == "t1"
    assert len(requests) == 1


async def test_secret_and_token_never_show(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    handle, _ = token_server()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        tokens = TokenProvider(CONFIG, http)
        await tokens.token()
        shown = repr(CONFIG) + str(CONFIG) + repr(tokens._token) + caplog.text
    assert "s3cr3t-value" not in shown
    assert "t1" not in repr(tokens._token)
