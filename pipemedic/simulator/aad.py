"""Simulated Azure AD (Entra ID): the token endpoints azure-identity's credentials use, and
the tokens ARM and the Databricks simulator accept.

Serves, as the real service does:

* ``POST /{tenant}/oauth2/v2.0/token`` (client credentials), proven three ways: a client
  secret; a certificate's signed ``client_assertion`` (the JWT's signature is checked against
  the registered certificate: PS256 with ``x5t#S256``, or RS256 with ``x5t``; ``aud`` must be
  this token URL, ``iss`` and ``sub`` the client id, ``exp`` in the future); a federated
  token as the assertion (workload identity: compared with the registered one);
* ``GET /metadata/identity/oauth2/token`` (IMDS, ``Metadata: true``) and ``GET /msi/token``
  (App Service, ``X-IDENTITY-HEADER``) for managed identities, echoing ``resource``.

Tokens are issued for ARM (``https://management.azure.com/.default``) and Azure Databricks
(``2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default``) and remember their audience:
:meth:`AzureADSim.check` accepts ARM calls, :meth:`AzureADSim.accepts` answers for any
audience. A refused secret or assertion is 401 ``invalid_client`` (never a 5xx, which
azure-core would retry). Tokens can be made to die early on the server side
(``valid_for_s``, ``valid_for_uses``) while the answer still advertises ``expires_in``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from pipemedic.simulator.protocol import BODY, SimError
from pipemedic.simulator.world import AppSpec, AzureAD

ARM = "https://management.azure.com"
DATABRICKS = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
ARM_SCOPE = f"{ARM}/.default"
AUDIENCES = frozenset({ARM, DATABRICKS})
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
APP_SERVICE_PATH = "/msi/token"
IMDS_PATH = "/metadata/identity/oauth2/token"


def audience_of(scope_or_resource: str) -> str:
    """``https://management.azure.com/.default``, ``.../`` and the bare resource are one."""
    return scope_or_resource.removesuffix("/.default").rstrip("/")


@dataclass
class _Issued:
    expires_at: float
    audience: str
    uses: int = 0


class AzureADSim:
    def __init__(self, spec: AzureAD, clock: Callable[[], float]) -> None:
        self._spec = spec
        self._clock = clock
        self._tokens: dict[str, _Issued] = {}
        main = AppSpec(spec.client_id, spec.tenant_id, client_secret=spec.client_secret)
        self._apps = {(app.tenant_id, app.client_id): app for app in (main, *spec.apps)}
        self._certs = {
            key: _certificate(app.certificate) for key, app in self._apps.items() if app.certificate
        }

    def reset(self) -> None:
        self._tokens.clear()

    @property
    def issued(self) -> int:
        return len(self._tokens)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/{tenant}/oauth2/v2.0/token", self._token_endpoint),
            web.get(IMDS_PATH, self._imds_endpoint),
            web.get(APP_SERVICE_PATH, self._app_service_endpoint),
        ]

    async def _token_endpoint(self, request: web.Request) -> web.Response:
        form = request[BODY] if isinstance(request[BODY], Mapping) else {}
        return web.json_response(self.issue(request.match_info["tenant"], form, str(request.url)))

    def issue(self, tenant: str, form: Mapping[str, str], token_url: str = "") -> dict:
        if not any(app_tenant == tenant for app_tenant, _ in self._apps):
            raise SimError(400, f"AADSTS90002: Tenant '{tenant}' not found.", "invalid_request")
        if form.get("grant_type") != "client_credentials":
            raise SimError(
                400,
                "AADSTS70003: The app requested an unsupported grant type.",
                "unsupported_grant_type",
            )
        client_id = form.get("client_id", "")
        app = self._apps.get((tenant, client_id))
        if app is None:
            raise SimError(
                400,
                f"AADSTS700016: Application '{client_id}' was not found in tenant '{tenant}'.",
                "unauthorized_client",
            )
        self._prove(app, form, token_url)
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or audience_of(scope) not in AUDIENCES:
            raise SimError(
                400, f"AADSTS70011: The provided scope '{scope}' is not valid.", "invalid_scope"
            )
        token, lifetime = self._new_token(audience_of(scope))
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    def _prove(self, app: AppSpec, form: Mapping[str, str], token_url: str) -> None:
        """Accept the client's proof (secret, certificate assertion, federated token) or
        raise the 401 ``invalid_client`` Azure AD answers."""
        assertion = form.get("client_assertion")
        if assertion is None:
            if not app.client_secret or form.get("client_secret") != app.client_secret:
                raise SimError(
                    401, "AADSTS7000215: Invalid client secret provided.", "invalid_client"
                )
            return
        if form.get("client_assertion_type") != JWT_BEARER:
            raise SimError(400, "AADSTS50027: Invalid client_assertion_type.", "invalid_request")
        if app.federated_token and assertion.strip() == app.federated_token.strip():
            return
        cert = self._certs.get((app.tenant_id, app.client_id))
        problem = (
            _assertion_problem(assertion, cert, app.client_id, token_url, self._clock())
            if cert is not None
            else "no certificate or federated credential is registered"
        )
        if problem:
            raise SimError(
                401,
                f"AADSTS700027: Client assertion failed validation: {problem}.",
                "invalid_client",
            )

    async def _imds_endpoint(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata", "").lower() != "true":
            raise SimError(400, "Required metadata header not specified", "invalid_request")
        return web.json_response(self._managed_identity_token(request.query))

    async def _app_service_endpoint(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self._spec.identity_header:
            raise SimError(401, "The identity header is missing or wrong.", "invalid_client")
        return web.json_response(self._managed_identity_token(request.query))

    def _managed_identity_token(self, query: Mapping[str, str]) -> dict:
        resource = query.get("resource", "")
        if audience_of(resource) not in AUDIENCES:
            raise SimError(400, f"Resource '{resource}' is not supported.", "invalid_resource")
        client_id = query.get("client_id")
        if client_id is not None and client_id not in self._spec.managed_identities:
            raise SimError(400, "Identity not found", "invalid_request")
        token, lifetime = self._new_token(audience_of(resource))
        return {
            "access_token": token,
            "expires_in": str(lifetime),
            "expires_on": str(int(self._clock()) + lifetime),
            "resource": resource,  # echoed: azure-identity caches under it
            "token_type": "Bearer",
        }

    def _new_token(self, audience: str) -> tuple[str, int]:
        spec = self._spec
        token = "sim-" + secrets.token_urlsafe(24)
        lifetime = spec.valid_for_s if spec.valid_for_s is not None else spec.expires_in_s
        self._tokens[token] = _Issued(expires_at=self._clock() + lifetime, audience=audience)
        return token, spec.expires_in_s

    def accepts(self, token: str, audience: str) -> bool:
        """Whether ``token`` is one we issued for ``audience`` (a scope or resource) and is
        still valid. Does not count as a use (``valid_for_uses`` is about ARM calls)."""
        issued = self._tokens.get(token)
        return (
            issued is not None
            and issued.audience == audience_of(audience)
            and self._clock() < issued.expires_at
        )

    def check(self, authorization: str | None) -> None:
        """Accept an ARM request's bearer token or raise the 401 ARM would answer."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise SimError(
                401,
                "Authentication failed. The 'Authorization' header is missing.",
                "AuthenticationFailed",
            )
        issued = self._tokens.get(token)
        if issued is None:
            raise SimError(401, "The access token is invalid.", "InvalidAuthenticationToken")
        if issued.audience != ARM:
            raise SimError(
                401,
                f"The access token has been obtained for the wrong audience '{issued.audience}'.",
                "InvalidAuthenticationTokenAudience",
            )
        issued.uses += 1
        spent = self._spec.valid_for_uses is not None and issued.uses > self._spec.valid_for_uses
        if spent or self._clock() >= issued.expires_at:
            raise SimError(
                401,
                "The access token expiry UTC time is earlier than current UTC time.",
                "ExpiredAuthenticationToken",
            )


def _certificate(pem_or_path: str) -> x509.Certificate:
    text = pem_or_path
    if "-----BEGIN" not in text:
        text = Path(text).read_text()
    return x509.load_pem_x509_certificate(text.encode())


def _b64(text: str) -> bytes:
    """base64url, padded or not (azure-identity pads)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _assertion_problem(
    assertion: str, cert: x509.Certificate, client_id: str, token_url: str, now: float
) -> str:
    """What is wrong with a certificate's client assertion, or "" if nothing."""
    try:
        head, body, signature = assertion.split(".")
        header, claims = json.loads(_b64(head)), json.loads(_b64(body))
        signed = _b64(signature)
    except (ValueError, binascii.Error):
        return "not a JWT"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return "not a JWT"
    der = cert.public_bytes(Encoding.DER)
    algorithm = header.get("alg")
    if algorithm == "PS256":
        thumbprint, expected = header.get("x5t#S256", ""), hashlib.sha256(der).digest()
        scheme: padding.AsymmetricPadding = padding.PSS(
            mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO
        )
    elif algorithm == "RS256":
        thumbprint, expected = header.get("x5t", ""), hashlib.sha1(der).digest()  # noqa: S324
        scheme = padding.PKCS1v15()
    else:
        return f"algorithm {algorithm!r} is not PS256 or RS256"
    try:
        if _b64(str(thumbprint)) != expected:
            return "the thumbprint names another certificate"
    except (ValueError, binascii.Error):
        return "the thumbprint is not base64url"
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return "the registered certificate has no RSA key"
    try:
        key.verify(signed, f"{head}.{body}".encode(), scheme, hashes.SHA256())
    except InvalidSignature:
        return "the signature does not match the registered certificate"
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return "iss and sub must be the client id"
    if token_url and claims.get("aud") != token_url:
        return f"aud {claims.get('aud')!r} is not the token endpoint"
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
        return "the assertion has expired"
    return ""
