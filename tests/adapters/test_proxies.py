"""Proxies from the environment: ADF (ARM), Azure AD tokens and playbook webhooks all go
through ``HTTPS_PROXY`` / ``HTTP_PROXY``, and none does for hosts ``NO_PROXY`` names."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from streams.adapters.adf import ADFClient, ADFConfig, FactoryRef
from streams.adapters.credentials import ClientSecretSpec, Credentials
from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.http import http_client
from streams.adapters.playbook import PlaybookClient, PlaybookConfig
from tests.adapters.loopback_proxy import LoopbackProxy

PAYLOAD = {"ticket_id": "chain-1", "retry_attempt": 1}
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def environment(monkeypatch):
    """``environment(proxy_url, no_proxy=None)``: set the proxy variables (both spellings)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    def set_proxy(url: str, no_proxy: str | None = None) -> None:
        for name in ("HTTPS_PROXY", "HTTP_PROXY"):
            monkeypatch.setenv(name, url)
            monkeypatch.setenv(name.lower(), url)
        if no_proxy is not None:
            monkeypatch.setenv("NO_PROXY", no_proxy)
            monkeypatch.setenv("no_proxy", no_proxy)

    return set_proxy


@pytest.fixture
async def playbook_server() -> AsyncIterator[str]:
    """A webhook on loopback; yields its URL."""

    async def accept(request: web.Request) -> web.Response:
        return web.json_response({"accepted": True})

    app = web.Application()
    app.router.add_post("/hook", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await runner.cleanup()


@contextlib.asynccontextmanager
async def clients(sim: Any, arm_url: str, hook: str) -> AsyncIterator[tuple[ADFClient, Any]]:
    """ADF and playbook clients built the way the worker builds them (after the environment
    is set: httpx reads it when the client is made)."""
    spec = ClientSecretSpec(
        type="client_secret",
        tenant_id="sim-tenant",
        client_id="sim-client",
        client_secret="sim-secret",
        authority=sim.https_url,
    )
    credentials = Credentials({"sim-sp": spec}, ca_bundle=sim.ca_file, timeout_s=5)
    http = http_client(ca_bundle=sim.ca_file, timeout_s=5)
    try:
        factory = FactoryRef("11111111-2222-3333-4444-555555555555", "rg-data", "sim-sp")
        config = ADFConfig({"fac-sales": factory}, arm_url=arm_url, timeout_s=5)
        adf = ADFClient(config, credentials.credential_for, http)
        books = PlaybookClient(PlaybookConfig(urls={"manual": hook}, retries=0), http)
        yield adf, books
    finally:
        await http.aclose()
        await credentials.close()


async def exercise(adf: ADFClient, books: PlaybookClient, estate: Any) -> None:
    await adf.get_run(estate.factory, estate.failed_run)
    await adf.rerun_from_failure(estate.factory, "load_orders", estate.failed_run)
    await books.call("manual", PAYLOAD)


async def test_plain_http_calls_each_pass_the_forward_proxy(
    start_sim, environment, playbook_server, estate
) -> None:
    sim = await start_sim()
    async with LoopbackProxy() as proxy:
        environment(proxy.url)
        async with clients(sim, sim.url, playbook_server) as (adf, books):
            await exercise(adf, books, estate)
    arm = [(c.method, c.path) for c in sim.calls if c.path.startswith("/subscriptions/")]
    forwarded = [(m, p) for m, p in proxy.seen_paths() if m != "CONNECT"]
    assert forwarded == [*arm, ("POST", "/hook")]  # every ARM and playbook call, in order
    # the token came over https: a tunnel to the authority
    port = sim.https_url.rsplit(":", 1)[1]
    assert ("CONNECT", f"127.0.0.1:{port}") in proxy.seen
    assert sim.count(path="*/oauth2/v2.0/token", status=200) == 1


async def test_https_calls_are_tunnelled(start_sim, environment, playbook_server, estate) -> None:
    sim = await start_sim()
    async with LoopbackProxy() as proxy:
        environment(proxy.url)
        async with clients(sim, sim.https_url, playbook_server) as (adf, books):
            await exercise(adf, books, estate)
    port = sim.https_url.rsplit(":", 1)[1]
    tunnels = [target for method, target in proxy.seen if method == "CONNECT"]
    # one tunnel or more for Azure AD's client, one or more for ARM's pool
    assert len(tunnels) >= 2 and set(tunnels) == {f"127.0.0.1:{port}"}
    assert sim.count(path="/subscriptions/*", status=200) == 2


async def test_a_dead_proxy_stops_every_call_so_none_went_around_it(
    start_sim, environment, playbook_server, estate
) -> None:
    sim = await start_sim()
    async with LoopbackProxy() as proxy:
        dead = proxy.url
    environment(dead)  # nothing listens there any more
    async with clients(sim, sim.https_url, playbook_server) as (adf, books):
        with pytest.raises(PlatformError) as token:
            await adf.get_run(estate.factory, estate.failed_run)  # Azure AD first
        with pytest.raises(PlatformError) as hook:
            await books.call("manual", PAYLOAD)
    assert token.value.kind is hook.value.kind is ErrorKind.TRANSIENT
    assert sim.calls == []


async def test_no_proxy_hosts_are_called_directly(
    start_sim, environment, playbook_server, estate
) -> None:
    sim = await start_sim()
    async with LoopbackProxy() as proxy:
        environment(proxy.url, no_proxy="127.0.0.1,localhost")
        async with clients(sim, sim.https_url, playbook_server) as (adf, books):
            await exercise(adf, books, estate)
        async with clients(sim, sim.url, playbook_server) as (adf, books):
            await exercise(adf, books, estate)
    assert proxy.seen == []
    assert sim.count(path="/subscriptions/*", status=200) == 4
