"""Azure AD client-credentials tokens for Azure Resource Manager.

Decides when a token is fetched: once, shared by every concurrent caller (hundreds of ADF
calls may find the cache empty at the same moment and must not each ask Azure AD), reused
until shortly before ``expires_in`` runs out, and dropped when ARM rejects it with a 401.
A failed fetch is reported to every caller that waited on it and is not cached, so the next
call tries again.

Token endpoint errors map like any HTTP error, except that Azure AD answers a bad client id
or secret with 400/401 ``invalid_client``: both are :attr:`ErrorKind.AUTH`, a human's job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.http import error_from_exception, error_from_response, json_body, path_segment

log = logging.getLogger(__name__)

_WHAT = "Azure AD token"


@dataclass(frozen=True)
class AzureADConfig:
    tenant_id: str
    client_id: str
    client_secret: SecretStr = field(repr=False)
    authority_url: str = "https://login.microsoftonline.com"
    scope: str = "https://management.azure.com/.default"
    timeout_s: float = 10.0
    # Refresh this long before expiry (capped at half the token's lifetime).
    refresh_margin_s: float = 300.0

    @property
    def token_url(self) -> str:
        tenant = path_segment(self.tenant_id, "tenant")
        return f"{self.authority_url.rstrip('/')}/{tenant}/oauth2/v2.0/token"


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float


class TokenProvider:
    """Bearer tokens for one app registration, cached and shared across tasks."""

    def __init__(
        self,
        config: AzureADConfig,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._token: _Token | None = None
        self._fetching: asyncio.Future[_Token] | None = None

    async def token(self) -> str:
        current = self._token
        if current is not None and self._clock() < current.refresh_at:
            return current.value
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
            self._fetching.add_done_callback(self._fetch_done)
        # shield: one caller giving up must not cancel the fetch the others wait on
        return (await asyncio.shield(self._fetching)).value

    def invalidate(self, stale: str | None = None) -> None:
        """Forget the cached token; with ``stale``, only if it is still the cached one.

        Many calls fail with the same expired token at once; passing the token they used
        makes only the first 401 force a new fetch.
        """
        if self._token is not None and (stale is None or self._token.value == stale):
            self._token = None

    def _fetch_done(self, future: asyncio.Future[_Token]) -> None:
        self._fetching = None
        if not future.cancelled() and future.exception() is None:
            self._token = future.result()

    async def _fetch(self) -> _Token:
        config = self._config
        form = {
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
            "scope": config.scope,
        }
        started = self._clock()
        try:
            response = await self._http.post(config.token_url, data=form, timeout=config.timeout_s)
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, _WHAT) from None
        if response.status_code in (400, 401) and _is_bad_credentials(response):
            error = error_from_response(response, _WHAT)
            raise PlatformError(ErrorKind.AUTH, str(error), status=response.status_code)
        if response.is_error:
            raise error_from_response(response, _WHAT)
        body = json_body(response, _WHAT)
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise PlatformError(ErrorKind.TRANSIENT, f"{_WHAT}: answer has no access_token")
        lifetime = float(body.get("expires_in") or 0)
        margin = min(config.refresh_margin_s, lifetime / 2)
        log.debug("fetched ARM token for client %s, valid %.0f s", config.client_id, lifetime)
        return _Token(value=value, refresh_at=started + lifetime - margin)


_CREDENTIAL_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"}
)


def _is_bad_credentials(response: httpx.Response) -> bool:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.status_code == 401
    return response.status_code == 401 or error in _CREDENTIAL_ERRORS
