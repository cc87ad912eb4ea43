"""Playbook webhooks: configured URLs only, bounded retries on transient failures."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.http import http_client
from streams.adapters.playbook import PlaybookClient, PlaybookConfig
from streams.policy.model import Action

URLS = {
    "upstream_check": "https://hooks.example/upstream",
    "manual": "https://hooks.example/manual",
}
PAYLOAD = {
    "ticket_id": "chain-7",
    "error_type": "upstream_not_ready",
    "metadata": {"factory": "fac-sales"},
    "retry_attempt": 2,
    "max_retries": 3,
}


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
async def playbook():
    """``playbook(*answers, **config)`` -> (client, requests seen, sleeps)."""
    clients: list[httpx.AsyncClient] = []

    def build(*answers, **config):
        seen: list[httpx.Request] = []
        queue = list(answers)

        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            answer = queue.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
        clients.append(http)
        sleeps = Sleeps()
        settings = {"urls": URLS, "retries": 2, "backoff_s": 0.5, **config}
        return PlaybookClient(PlaybookConfig(**settings), http, sleep=sleeps), seen, sleeps

    yield build
    for http in clients:
        await http.aclose()


async def test_posts_the_payload_to_the_configured_url(playbook) -> None:
    client, seen, _ = playbook(httpx.Response(200, json={"accepted": True, "run": "r-9"}))
    assert await client.call("upstream_check", PAYLOAD) == {"accepted": True, "run": "r-9"}
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", URLS["upstream_check"])
    assert json.loads(request.content) == PAYLOAD
    assert request.headers["Idempotency-Key"] == "chain-7:2"
    assert "Authorization" not in request.headers


async def test_action_enum_and_bearer_token(playbook) -> None:
    client, seen, _ = playbook(httpx.Response(204), token=SecretStr("hook-secret"))
    assert await client.call(Action.MANUAL, PAYLOAD) == {}
    assert str(seen[0].url) == URLS["manual"]
    assert seen[0].headers["Authorization"] == "Bearer hook-secret"
    assert "hook-secret" not in repr(PlaybookConfig(urls=URLS, token=SecretStr("hook-secret")))


async def test_plain_text_answer_is_kept(playbook) -> None:
    client, _, _ = playbook(httpx.Response(200, text="OK"))
    assert await client.call("manual", PAYLOAD) == {"text": "OK"}


async def test_transient_failures_are_retried_with_doubling_backoff(playbook) -> None:
    client, seen, sleeps = playbook(
        httpx.Response(502), httpx.ReadTimeout("slow"), httpx.Response(200, json={"ok": 1})
    )
    assert await client.call("upstream_check", PAYLOAD) == {"ok": 1}
    assert len(seen) == 3
    assert sleeps == [0.5, 1.0]


async def test_gives_up_after_the_configured_retries(playbook) -> None:
    client, seen, sleeps = playbook(
        httpx.Response(503), httpx.Response(500), httpx.ConnectError("refused")
    )
    with pytest.raises(PlatformError) as caught:
        await client.call("upstream_check", PAYLOAD)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert len(seen) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(400, json={"error": "bad payload"}), ErrorKind.BAD_REQUEST),
        (httpx.Response(401), ErrorKind.AUTH),
        (httpx.Response(404), ErrorKind.NOT_FOUND),
        (httpx.Response(409), ErrorKind.CONFLICT),
        (httpx.Response(429, headers={"Retry-After": "12"}), ErrorKind.THROTTLED),
    ],
)
async def test_other_failures_go_straight_back_to_the_policy(playbook, answer, kind) -> None:
    client, seen, sleeps = playbook(answer)
    with pytest.raises(PlatformError) as caught:
        await client.call("upstream_check", PAYLOAD)
    assert caught.value.kind is kind
    assert (len(seen), sleeps) == (1, [])
    if kind is ErrorKind.THROTTLED:
        assert caught.value.retry_after_s == 12.0


async def test_unconfigured_action_never_reaches_the_network(playbook) -> None:
    client, seen, _ = playbook()
    with pytest.raises(PlatformError) as caught:
        await client.call("restart_cluster", PAYLOAD)
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert seen == []


async def test_a_redirect_is_not_followed(playbook) -> None:
    moved = httpx.Response(302, headers={"Location": "https://elsewhere.example/hook"})
    client, seen, sleeps = playbook(moved, httpx.Response(200, json={}))
    with pytest.raises(PlatformError) as caught:
        await client.call("upstream_check", PAYLOAD)
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert "not followed" in str(caught.value)
    assert (len(seen), sleeps) == (1, [])


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_real_timeout_over_the_shared_client(transport) -> None:
    """A webhook that never answers costs ``timeout_s`` per attempt, then TRANSIENT."""

    async def never(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", never)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with http_client(transport=transport) as http:
            config = PlaybookConfig(
                urls={"manual": f"http://127.0.0.1:{port}/hook"}, timeout_s=0.2, retries=1
            )
            client = PlaybookClient(config, http, sleep=Sleeps())
            started = time.monotonic()
            with pytest.raises(PlatformError) as caught:
                await client.call("manual", PAYLOAD)
            assert caught.value.kind is ErrorKind.TRANSIENT
            assert 0.35 < time.monotonic() - started < 2
    finally:
        await runner.cleanup()
