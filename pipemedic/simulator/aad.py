"""Simulated Azure AD: the client-credentials token endpoint and the tokens ARM accepts.

Validates a token request the way Azure AD does where client bugs hide: unknown tenant,
wrong grant type, wrong client id or secret, a scope other than the configured ARM scope.
Tokens can be made to die early on the server side (``valid_for_s``, ``valid_for_uses``)
while the answer still advertises ``expires_in``, which is how a client's 401-refresh path
gets exercised.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from pipemedic.simulator.protocol import BODY, SimError
from pipemedic.simulator.world import AzureAD

ARM_SCOPE = "https://management.azure.com/.default"


@dataclass
class _Issued:
    expires_at: float
    uses: int = 0


class AzureADSim:
    def __init__(self, spec: AzureAD, clock: Callable[[], float]) -> None:
        self._spec = spec
        self._clock = clock
        self._tokens: dict[str, _Issued] = {}

    def reset(self) -> None:
        self._tokens.clear()

    @property
    def issued(self) -> int:
        return len(self._tokens)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{tenant}/oauth2/v2.0/token", self._token_endpoint)]

    async def _token_endpoint(self, request: web.Request) -> web.Response:
        form = request[BODY] if isinstance(request[BODY], Mapping) else {}
        return web.json_response(self.issue(request.match_info["tenant"], form))

    def issue(self, tenant: str, form: Mapping[str, str]) -> dict:
        spec = self._spec
        if tenant != spec.tenant_id:
            raise SimError(400, f"AADSTS90002: Tenant '{tenant}' not found.", "invalid_request")
        if form.get("grant_type") != "client_credentials":
            raise SimError(
                400,
                "AADSTS70003: The app requested an unsupported grant type.",
                "unsupported_grant_type",
            )
        if form.get("client_id") != spec.client_id:
            raise SimError(
                400,
                f"AADSTS700016: Application '{form.get('client_id')}' was not found.",
                "unauthorized_client",
            )
        if form.get("client_secret") != spec.client_secret:
            raise SimError(401, "AADSTS7000215: Invalid client secret provided.", "invalid_client")
        if form.get("scope") != ARM_SCOPE:
            raise SimError(
                400,
                f"AADSTS70011: The provided scope '{form.get('scope')}' is not valid.",
                "invalid_scope",
            )
        token = "sim-" + secrets.token_urlsafe(24)
        lifetime = spec.valid_for_s if spec.valid_for_s is not None else spec.expires_in_s
        self._tokens[token] = _Issued(expires_at=self._clock() + lifetime)
        return {
            "token_type": "Bearer",
            "expires_in": spec.expires_in_s,
            "ext_expires_in": spec.expires_in_s,
            "access_token": token,
        }

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
        issued.uses += 1
        spent = self._spec.valid_for_uses is not None and issued.uses > self._spec.valid_for_uses
        if spent or self._clock() >= issued.expires_at:
            raise SimError(
                401,
                "The access token expiry UTC time is earlier than current UTC time.",
                "ExpiredAuthenticationToken",
            )
