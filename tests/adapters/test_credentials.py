"""Every estate credential type, built by azure-identity (aio), against the simulator's
Azure AD over TLS: token acquired, re-acquired when expired, refreshed ahead of expiry,
refused proof -> ``auth`` with one token request per call."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from pydantic import TypeAdapter

from streams.adapters.credentials import (
    ARM_SCOPE,
    DATABRICKS_SCOPE,
    Credentials,
    CredentialSpec,
    bearer_token,
)
from streams.adapters.errors import ErrorKind, PlatformError

TENANT, CERT_APP, WORKLOAD_APP, USER_MI = "sim-tenant", "cert-app", "aks-app", "uami-1"
FEDERATED = "eyJhbGciOi.federated.sa-token"
OTHER_TENANT = "tenant-b"

spec_of = TypeAdapter(CredentialSpec).validate_python


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory) -> tuple[Path, str, Any]:
    """(PEM file with key and certificate, the certificate's PEM, the leaf) for CERT_APP."""
    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "cert-app.example", key_type=trustme.KeyType.RSA
    )
    path = tmp_path_factory.mktemp("cert") / "client.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(path)
    return path, leaf.cert_chain_pems[0].bytes().decode(), leaf


@pytest.fixture
async def aad(start_sim, small_world, client_cert, monkeypatch):
    """The simulator with more app registrations, and ``creds(spec)`` to build credentials."""
    world = small_world(
        azure_ad={
            "apps": [
                {"client_id": CERT_APP, "certificate": client_cert[1]},
                {"client_id": WORKLOAD_APP, "federated_token": FEDERATED},
                {"client_id": "b-app", "tenant_id": OTHER_TENANT, "client_secret": "b-secret"},
            ],
            "managed_identities": [USER_MI],
        }
    )
    sim = await start_sim(world)
    built: list[Credentials] = []

    def creds(**spec: Any):
        credentials = Credentials({"c": spec_of(spec)}, ca_bundle=sim.ca_file, timeout_s=5)
        built.append(credentials)
        return credentials.credential_for("c")

    sim.creds = creds
    yield sim
    for credentials in built:
        await credentials.close()


def secret_spec(sim, secret: str = "sim-secret", **extra: Any) -> dict[str, Any]:
    return {
        "type": "client_secret",
        "tenant_id": TENANT,
        "client_id": "sim-client",
        "client_secret": secret,
        "authority": sim.https_url,
        **extra,
    }


def token_requests(sim) -> int:
    return sim.count(path="*/oauth2/v2.0/token") + sim.count(path="*/identity/oauth2/token")


def shift_clock(monkeypatch, seconds: float) -> None:
    """azure-identity reads ``time.time()``; the simulator keeps its own (real) clock."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


# ---- one test per credential type ------------------------------------------------------------


async def test_client_secret(aad) -> None:
    credential = aad.creds(**secret_spec(aad))
    token = await bearer_token(credential, ARM_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(token, ARM_SCOPE)
    assert await bearer_token(credential, ARM_SCOPE, "t") == token  # cached by the library
    databricks = await bearer_token(credential, DATABRICKS_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(databricks, DATABRICKS_SCOPE)
    assert not aad.sim.azure_ad.accepts(databricks, ARM_SCOPE)
    assert token_requests(aad) == 2


async def test_a_second_tenant_and_app_registration(aad) -> None:
    spec = secret_spec(aad, "b-secret", tenant_id=OTHER_TENANT, client_id="b-app")
    token = await bearer_token(aad.creds(**spec), ARM_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(token, ARM_SCOPE)
    (call,) = aad.matching(path=f"/{OTHER_TENANT}/oauth2/v2.0/token")
    assert call.status == 200 and call.body["client_secret"] == "***"


async def test_certificate_assertion_is_checked_against_the_registered_certificate(
    aad, client_cert
) -> None:
    spec = {
        "type": "certificate",
        "tenant_id": TENANT,
        "client_id": CERT_APP,
        "certificate_path": str(client_cert[0]),
        "authority": aad.https_url,
    }
    token = await bearer_token(aad.creds(**spec), DATABRICKS_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(token, DATABRICKS_SCOPE)
    (call,) = aad.matching(path="*/oauth2/v2.0/token")
    assert call.body["client_assertion"] == "***"  # a bearer proof: not logged


async def test_a_certificate_that_is_not_the_registered_one_is_auth(aad, tmp_path) -> None:
    other = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "impostor.example", key_type=trustme.KeyType.RSA
    )
    other.private_key_and_cert_chain_pem.write_to_path(tmp_path / "other.pem")
    spec = {
        "type": "certificate",
        "tenant_id": TENANT,
        "client_id": CERT_APP,
        "certificate_path": str(tmp_path / "other.pem"),
        "authority": aad.https_url,
    }
    with pytest.raises(PlatformError) as caught:
        await bearer_token(aad.creds(**spec), ARM_SCOPE, "t")
    assert caught.value.kind is ErrorKind.AUTH
    assert "AADSTS700027" in str(caught.value)
    assert aad.count(path="*/oauth2/v2.0/token", status=401) == 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def rs256_assertion(leaf, token_url: str, *, tamper: bool = False) -> str:
    """What MSAL (sync) sends: RS256 with a SHA-1 ``x5t``, unpadded base64url."""
    cert = leaf.cert_chain_pems[0].bytes()
    from cryptography import x509

    der = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    header = {"alg": "RS256", "typ": "JWT", "x5t": _b64(hashlib.sha1(der).digest())}
    now = int(time.time())
    claims = {
        "aud": token_url,
        "iss": CERT_APP,
        "sub": CERT_APP,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "exp": now + 600,
    }
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return f"{signing}.{_b64(signature)}"


@pytest.mark.parametrize(("tamper", "status"), [(False, 200), (True, 401)])
async def test_rs256_assertions_with_x5t_are_accepted_too(
    aad, client_cert, tamper: bool, status: int
) -> None:
    url = f"{aad.https_url}/{TENANT}/oauth2/v2.0/token"
    async with httpx.AsyncClient(verify=aad.ca_file) as http:
        answer = await http.post(
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": CERT_APP,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": rs256_assertion(client_cert[2], url, tamper=tamper),
                "scope": ARM_SCOPE,
            },
        )
    assert answer.status_code == status
    if tamper:
        assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize(("content", "kind"), [(FEDERATED + "\n", None), ("forged", "auth")])
async def test_workload_identity_sends_the_federated_token_file(
    aad, tmp_path, monkeypatch, content: str, kind: str | None
) -> None:
    (tmp_path / "token").write_text(content)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", WORKLOAD_APP)
    credential = aad.creds(type="workload_identity", authority=aad.https_url)  # env defaults
    if kind is None:
        token = await bearer_token(credential, ARM_SCOPE, "t")
        assert aad.sim.azure_ad.accepts(token, ARM_SCOPE)
    else:
        with pytest.raises(PlatformError) as caught:
            await bearer_token(credential, ARM_SCOPE, "t")
        assert caught.value.kind is ErrorKind.AUTH


@pytest.mark.parametrize("client_id", [None, USER_MI])
async def test_managed_identity_on_a_vm_imds(aad, monkeypatch, client_id: str | None) -> None:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", aad.imds_url)
    spec = {"type": "managed_identity", **({"client_id": client_id} if client_id else {})}
    credential = aad.creds(**spec)
    token = await bearer_token(credential, ARM_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(token, ARM_SCOPE)
    databricks = await bearer_token(credential, DATABRICKS_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(databricks, DATABRICKS_SCOPE)
    calls = aad.matching(path="/metadata/identity/oauth2/token")
    assert [c.query["resource"] for c in calls] == [
        "https://management.azure.com",
        "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d",
    ]
    assert all(c.query.get("client_id") == client_id for c in calls)


async def test_an_unknown_managed_identity_is_auth(aad, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", aad.imds_url)
    credential = aad.creds(type="managed_identity", client_id="nobody")
    for calls in (1, 2):
        with pytest.raises(PlatformError) as caught:
            await bearer_token(credential, ARM_SCOPE, "t")
        assert caught.value.kind is ErrorKind.AUTH
        assert aad.count(path="/metadata/identity/oauth2/token") == calls


async def test_managed_identity_on_app_service(aad, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", aad.app_service_url)
    monkeypatch.setenv("IDENTITY_HEADER", "sim-identity-header")
    token = await bearer_token(aad.creds(type="managed_identity"), ARM_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(token, ARM_SCOPE)
    (call,) = aad.matching(path="/msi/token")
    assert call.query["resource"] == "https://management.azure.com"


async def test_default_credential_takes_the_environment(aad, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "environmentcredential")  # spawn no `az`
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", "sim-client")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "sim-secret")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", aad.https_url)
    token = await bearer_token(aad.creds(type="default"), ARM_SCOPE, "t")
    assert aad.sim.azure_ad.accepts(token, ARM_SCOPE)


async def test_default_credential_with_nothing_available_is_auth(aad, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "environmentcredential")
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PlatformError) as caught:
        await bearer_token(aad.creds(type="default"), ARM_SCOPE, "t")
    assert caught.value.kind is ErrorKind.AUTH
    assert token_requests(aad) == 0


# ---- expiry, refresh, refusal ----------------------------------------------------------------


async def test_an_expired_token_is_acquired_again(aad, monkeypatch) -> None:
    credential = aad.creds(**secret_spec(aad))
    first = await bearer_token(credential, ARM_SCOPE, "t")
    shift_clock(monkeypatch, 3600)  # past the advertised expires_in (3599 s)
    second = await bearer_token(credential, ARM_SCOPE, "t")
    assert second != first
    assert token_requests(aad) == 2


async def test_a_short_lived_token_is_acquired_again(start_sim, small_world) -> None:
    sim = await start_sim(small_world(azure_ad={"expires_in_s": 0}))
    credentials = Credentials({"c": spec_of(secret_spec(sim))}, ca_bundle=sim.ca_file)
    try:
        credential = credentials.credential_for("c")
        tokens = {await bearer_token(credential, ARM_SCOPE, "t") for _ in range(3)}
    finally:
        await credentials.close()
    assert len(tokens) == 3
    assert sim.count(path="*/oauth2/v2.0/token") == 3


async def test_a_token_is_refreshed_before_it_expires(aad, monkeypatch) -> None:
    credential = aad.creds(**secret_spec(aad))
    first = await bearer_token(credential, ARM_SCOPE, "t")
    shift_clock(monkeypatch, 3599 - 200)  # within the library's 300 s refresh window
    second = await bearer_token(credential, ARM_SCOPE, "t")
    assert second != first
    assert aad.sim.azure_ad.accepts(first, ARM_SCOPE)  # the old one was still valid
    assert token_requests(aad) == 2


async def test_a_refused_secret_is_auth_and_one_request_per_call(aad) -> None:
    credential = aad.creds(**secret_spec(aad, "wrong"))
    for calls in (1, 2, 3):
        with pytest.raises(PlatformError) as caught:
            await bearer_token(credential, ARM_SCOPE, "ADF")
        assert caught.value.kind is ErrorKind.AUTH
        assert "invalid_client" in str(caught.value)
        assert aad.count(path="*/oauth2/v2.0/token", status=401) == calls
    assert token_requests(aad) == 3


async def test_a_token_endpoint_outage_is_transient_without_retrying_inside(
    start_sim, small_world
) -> None:
    modes = [{"path": "*/oauth2/v2.0/token", "fail_5xx": {"status": 503}}]
    sim = await start_sim(small_world(error_modes=modes))
    credentials = Credentials({"c": spec_of(secret_spec(sim))}, ca_bundle=sim.ca_file)
    try:
        with pytest.raises(PlatformError) as caught:
            await bearer_token(credentials.credential_for("c"), ARM_SCOPE, "t")
    finally:
        await credentials.close()
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert sim.count(path="*/oauth2/v2.0/token") == 1  # no retry loop inside azure-core


async def test_a_simulator_ca_is_needed_to_talk_to_it(aad) -> None:
    credentials = Credentials({"c": spec_of(secret_spec(aad))})  # system CAs only
    try:
        with pytest.raises(PlatformError) as caught:
            await bearer_token(credentials.credential_for("c"), ARM_SCOPE, "t")
    finally:
        await credentials.close()
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert token_requests(aad) == 0


@pytest.mark.parametrize(
    "spec",
    [
        {
            "type": "certificate",
            "tenant_id": TENANT,
            "client_id": CERT_APP,
            "certificate_path": "/no/such.pem",
        },
        {"type": "workload_identity"},  # and no AZURE_* variables
    ],
)
async def test_a_credential_that_cannot_be_built_is_auth(monkeypatch, spec) -> None:
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    credentials = Credentials({"c": spec_of(spec)})
    with pytest.raises(PlatformError) as caught:
        credentials.credential_for("c")
    assert caught.value.kind is ErrorKind.AUTH
    assert "credential 'c' cannot be used" in str(caught.value)


async def test_a_failed_refresh_ahead_of_expiry_keeps_the_valid_token(
    aad, monkeypatch, tmp_path
) -> None:
    ca = tmp_path / "ca.pem"  # the simulator removes its own copy when it stops
    ca.write_bytes(Path(aad.ca_file).read_bytes())
    credentials = Credentials({"c": spec_of(secret_spec(aad))}, ca_bundle=str(ca))
    try:
        credential = credentials.credential_for("c")
        first = await bearer_token(credential, ARM_SCOPE, "t")
        await aad.stop()  # Azure AD unreachable from now on
        shift_clock(monkeypatch, 3599 - 200)  # refresh recommended, the token still valid
        assert await bearer_token(credential, ARM_SCOPE, "t") == first
        shift_clock(monkeypatch, 3600)  # expired: now the failure shows
        with pytest.raises(PlatformError) as caught:
            await bearer_token(credential, ARM_SCOPE, "t")
        assert caught.value.kind is ErrorKind.TRANSIENT
    finally:
        await credentials.close()


async def test_an_unreadable_ca_bundle_is_auth(aad, tmp_path) -> None:
    credentials = Credentials(
        {"c": spec_of(secret_spec(aad))}, ca_bundle=str(tmp_path / "missing.pem")
    )
    try:
        with pytest.raises(PlatformError) as caught:
            await bearer_token(credentials.credential_for("c"), ARM_SCOPE, "t")
    finally:
        await credentials.close()
    assert caught.value.kind is ErrorKind.AUTH
