"""Databricks auth per workspace, against the simulator with the real SDK and credentials:
PAT, OAuth M2M (a Databricks service principal) and Entra ID tokens from azure-identity;
proxies from the environment."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from pydantic import SecretStr

from pipemedic.simulator.world import WorldError, world_from_dict
from streams.adapters.credentials import ClientSecretSpec, Credentials
from streams.adapters.databricks import WorkspaceRef
from streams.adapters.errors import ErrorKind, PlatformError
from tests.adapters.loopback_proxy import LoopbackProxy

SP = {"client_id": "sp-ops", "client_secret": "sp-secret"}
TOKEN_PATH = "*/oidc/v1/token"
API = "*/api/*"


def _with_principal(small_world: Any) -> dict[str, Any]:
    world = small_world()
    world["workspaces"][0]["service_principals"] = [dict(SP)]
    return world


def _m2m(sim: Any, ws: str, secret: str = SP["client_secret"]) -> WorkspaceRef:
    return WorkspaceRef(
        sim.databricks_host(ws),
        auth="oauth-m2m",
        client_id=SP["client_id"],
        client_secret=SecretStr(secret),
    )


async def test_oauth_m2m_token_comes_from_the_workspace_oidc(
    start_sim, small_world, databricks_for, estate
) -> None:
    sim = await start_sim(_with_principal(small_world))
    dbx = databricks_for(sim, ref=_m2m(sim, estate.workspace))
    for _ in range(3):
        assert (await dbx.get_cluster(estate.workspace, estate.cluster)).state == "TERMINATED"
    assert sim.count("GET", "*/.well-known/databricks-config") == 1
    assert sim.count("GET", "*/oidc/.well-known/oauth-authorization-server") == 1
    (token_call,) = sim.matching("POST", TOKEN_PATH)
    assert (token_call.status, token_call.body) == (
        200,
        {"grant_type": "client_credentials", "scope": "all-apis"},
    )  # the secret travelled in the Basic header, not the form
    assert sim.count("GET", "*/clusters/get", status=200) == 3


async def test_oauth_m2m_refused_secret_is_auth_and_no_retry_storm(
    start_sim, small_world, databricks_for, estate
) -> None:
    sim = await start_sim(_with_principal(small_world))
    dbx = databricks_for(sim, ref=_m2m(sim, estate.workspace, secret="stale-secret"))
    for attempt in (1, 2):
        with pytest.raises(PlatformError) as caught:
            await dbx.get_cluster(estate.workspace, estate.cluster)
        assert caught.value.kind is ErrorKind.AUTH
        assert "invalid_client" in str(caught.value)
        assert "stale-secret" not in str(caught.value)
        # one token request per call we made, none retried inside the SDK, no API call
        assert sim.count("POST", TOKEN_PATH, status=401) == attempt
    assert sim.count(path=API) == 0


def test_world_refuses_unknown_service_principal_keys(small_world) -> None:
    world = _with_principal(small_world)
    world["workspaces"][0]["service_principals"][0]["secret"] = "typo"
    with pytest.raises(WorldError, match=r"world\.workspaces\[0\]\.service_principals\[0\]"):
        world_from_dict(world)


async def test_entra_id_token_from_a_real_azure_identity_credential(
    start_sim, databricks_for, estate
) -> None:
    """client_secret credential (azure.identity.aio) against the simulator's Azure AD over TLS;
    the token is fetched on the test's event loop while the SDK call runs on a pool thread."""
    sim = await start_sim()
    credentials = Credentials(
        {
            "sim-sp": ClientSecretSpec(
                type="client_secret",
                tenant_id="sim-tenant",
                client_id="sim-client",
                client_secret="sim-secret",
                authority=sim.https_url,
            )
        },
        ca_bundle=sim.ca_file,
    )
    ref = WorkspaceRef(sim.databricks_host(estate.workspace), auth="azure", credential="sim-sp")
    try:
        dbx = databricks_for(sim, ref=ref, credential_for=credentials.credential_for)
        for _ in range(3):
            await dbx.get_cluster(estate.workspace, estate.cluster)
        (token_call,) = sim.matching("POST", "*/oauth2/v2.0/token")  # cached by the library
        assert token_call.body["scope"] == "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"
        assert sim.count("GET", "*/clusters/get", status=200) == 3
    finally:
        await credentials.close()


class _RecordingCredential:
    """A minimal ``AsyncTokenCredential``: answers or refuses, and records the thread."""

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.threads: list[int] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.threads.append(threading.get_ident())
        if isinstance(self.answer, Exception):
            raise self.answer
        return AccessToken(self.answer, 2_000_000_000)

    async def close(self) -> None:
        return None


async def test_refused_entra_credential_is_auth_before_any_api_call(
    start_sim, databricks_for, estate
) -> None:
    sim = await start_sim()
    refused = _RecordingCredential(ClientAuthenticationError("AADSTS7000215: Invalid secret"))
    ref = WorkspaceRef(sim.databricks_host(estate.workspace), auth="azure", credential="sp")
    dbx = databricks_for(sim, ref=ref, credential_for=lambda name: refused)
    with pytest.raises(PlatformError) as caught:
        await dbx.get_cluster(estate.workspace, estate.cluster)
    assert caught.value.kind is ErrorKind.AUTH
    assert refused.threads == [threading.get_ident()]  # asked once, on this loop's thread
    assert sim.count(path=API) == 0


async def test_an_entra_token_the_workspace_does_not_know_is_auth(
    start_sim, databricks_for, estate
) -> None:
    sim = await start_sim()
    forged = _RecordingCredential("eyJ-not-issued-by-azure-ad")
    ref = WorkspaceRef(sim.databricks_host(estate.workspace), auth="azure", credential="sp")
    dbx = databricks_for(sim, ref=ref, credential_for=lambda name: forged)
    with pytest.raises(PlatformError) as caught:
        await dbx.get_cluster(estate.workspace, estate.cluster)
    assert caught.value.kind is ErrorKind.AUTH
    assert sim.count("GET", "*/clusters/get", status=403) == 1


@pytest.mark.parametrize("auth", ["pat", "oauth-m2m"])
async def test_every_call_goes_through_the_environment_proxy(
    start_sim, small_world, databricks_for, estate, monkeypatch, auth
) -> None:
    sim = await start_sim(_with_principal(small_world))
    async with LoopbackProxy() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        ref = _m2m(sim, estate.workspace) if auth == "oauth-m2m" else None
        dbx = databricks_for(sim, ref=ref)
        await dbx.get_cluster(estate.workspace, estate.cluster)
        await dbx.start_cluster(estate.workspace, estate.cluster)
        sent = [(call.method, call.path) for call in sim.calls]
        assert len(sent) == (5 if auth == "oauth-m2m" else 3)
        assert proxy.seen_paths() == sent


async def test_no_proxy_matching_the_host_bypasses_it(
    start_sim, databricks_for, estate, monkeypatch
) -> None:
    sim = await start_sim()
    async with LoopbackProxy() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        await databricks_for(sim).get_cluster(estate.workspace, estate.cluster)
        assert sim.count("GET", "*/clusters/get", status=200) == 1
        assert proxy.seen == []


async def test_build_happens_off_the_event_loop(start_sim, databricks_for, estate) -> None:
    """The loop keeps turning while a client is built (the SDK probes the host)."""
    sim = await start_sim(
        {"workspaces": [{"workspace_id": estate.workspace, "token": estate.pat}], "latency_ms": 200}
    )
    dbx = databricks_for(sim)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    with pytest.raises(PlatformError):  # the world has no clusters
        await dbx.get_cluster(estate.workspace, estate.cluster)
    ticker.cancel()
    assert ticks >= 5  # 400 ms of exchanges passed while the loop kept turning


async def test_https_through_the_proxy_tunnel_trusting_the_requests_ca_bundle(
    start_sim, databricks_for, estate, monkeypatch
) -> None:
    """TLS end to end through ``CONNECT``: the proxy sees tunnels to the workspace host, not
    the requests inside them; requests trusts ``REQUESTS_CA_BUNDLE`` (the run's CA)."""
    sim = await start_sim()
    host = f"{sim.https_url}/databricks/{estate.workspace}"
    async with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_file)
        for name in ("NO_PROXY", "no_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        ref = WorkspaceRef(host, SecretStr(estate.pat))
        await databricks_for(sim, ref=ref).get_cluster(estate.workspace, estate.cluster)
        assert sim.count("GET", "*/clusters/get", status=200) == 1
        tunnels = {target for method, target in proxy.seen if method == "CONNECT"}
        assert tunnels == {sim.https_url.removeprefix("https://")}
