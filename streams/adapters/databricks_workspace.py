"""How one estate workspace becomes a databricks-sdk ``WorkspaceClient``: auth, pools, no waits.

Everything here goes through the SDK's public configuration (``Config`` keywords, the
``credentials_strategy`` hook, the ``Clock`` interface); nothing reaches into its internals.

* **Auth, per workspace.** ``pat``: the workspace's personal access token. ``oauth-m2m``: a
  Databricks service principal; the SDK reads the workspace's ``/.well-known/databricks-config``,
  then its OIDC discovery document, and fetches and refreshes the token itself. ``azure``: Entra
  ID tokens (service principal, managed identity, workload identity) from the azure-identity
  *async* credential the estate names, the same object ADF uses, so one token cache serves both.
  The SDK asks for headers on the calling worker thread; the token is fetched on the event loop
  that owns the credential (``run_coroutine_threadsafe``), never on a loop of our own. The SDK's
  own ``azure-client-secret`` is not used: it only works on Azure host names and knows no
  managed identity.
* **Refusals are auth errors.** A Databricks token endpoint that refuses the service principal
  (an OAuth error code such as ``invalid_client``) raises :class:`CredentialRefused`; a token
  that could not be fetched (network, timeout, a garbled answer) raises
  :class:`CredentialUnavailable`. Entra ID failures are classified as for ADF
  (:func:`streams.adapters.credentials.bearer_token`). The SDK retries none of them.
* **No waiting inside the SDK.** The SDK retries 429/503, connection failures and timed-out
  reads itself and sleeps in between (the full ``Retry-After`` first). Waiting is our retry
  policy's job (the delay tiers), so each client gets :class:`SkipWaits`, a clock that does not
  sleep but moves the calling thread's time past the retry deadline
  (``retry_timeout_seconds``): the SDK's loop ends after the first failure with its own
  ``TimeoutError`` whose ``__cause__`` is that failure. Limits: the host-metadata probe made
  while a client is built uses the SDK's real clock (bounded by the same small
  ``retry_timeout_seconds``, but a ``Retry-After`` on that probe is slept, on a pool thread);
  OAuth token requests are made by the SDK without retries and without a timeout of ours.
* **Connections.** The SDK keeps one ``requests`` pool per client, sized here to the calls the
  workspace may have in flight: an ``HTTPAdapter`` handed over as ``http_adapter`` where the
  SDK takes one (>= 0.167), else ``max_connections_per_pool``/``max_connection_pools``, which
  older SDKs apply to https only (plain-http hosts, such as the simulator, then keep requests'
  default 10 connections). ``requests`` honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
  and ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import requests
from azure.core.credentials_async import AsyncTokenCredential
from databricks.sdk import WorkspaceClient
from databricks.sdk.clock import Clock
from databricks.sdk.config import Config
from databricks.sdk.credentials_provider import (
    CredentialsProvider,
    CredentialsStrategy,
    DefaultCredentials,
    credentials_strategy,
)
from pydantic import SecretStr

from streams.adapters.credentials import DATABRICKS_SCOPE, bearer_token

# Azure Databricks' application id: Entra tokens for the workspace API carry it as audience.
ENTRA_SCOPE = DATABRICKS_SCOPE  # 2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default
ENTRA_AUTH_TYPE = "azure-entra-id"  # our strategy's name in the SDK's auth_type
RETRY_TIMEOUT_S = 1  # the SDK's retry budget; SkipWaits jumps past it on the first wait

AuthType = Literal["pat", "oauth-m2m", "azure"]
CredentialFor = Callable[[str], AsyncTokenCredential]

# RFC 6749 section 5.2 codes: the token endpoint refused who we are or what we asked for.
_OAUTH_REFUSAL = re.compile(
    r"(invalid_client|invalid_grant|invalid_request|invalid_scope|unauthorized_client|"
    r"unsupported_grant_type|access_denied)\b"
)


class CredentialRefused(Exception):
    """The identity provider refused the credential: a person must fix it."""


class CredentialUnavailable(Exception):
    """No token could be fetched this time (network, timeout, a garbled answer)."""


class WorkspaceAuth(Protocol):
    """What the client needs of an estate workspace entry (``WorkspaceRef`` or the estate's
    own model): the host and how to authenticate."""

    host: str
    auth: AuthType
    token: SecretStr | None
    client_id: str | None
    client_secret: SecretStr | None
    credential: str | None


def connection_pool(connections: int) -> requests.adapters.HTTPAdapter | None:
    """The transport for one workspace's client, where the SDK takes one (``http_adapter``,
    databricks-sdk >= 0.167: then plain http is pooled too); the caller closes it."""
    if not _TAKES_ADAPTER:
        return None
    return requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=connections, pool_block=True
    )


_TAKES_ADAPTER = "http_adapter" in inspect.signature(Config.__init__).parameters


def connect(
    entry: WorkspaceAuth,
    *,
    timeout_s: float,
    connections: int,
    pool: requests.adapters.HTTPAdapter | None,
    loop: asyncio.AbstractEventLoop,
    credential: AsyncTokenCredential | None,
) -> WorkspaceClient:
    """Build the SDK client for one workspace. Blocking (the SDK probes the host): call it on
    a worker thread. ``credential``: the estate's credential for ``auth: azure``, which lives
    on ``loop`` (the running event loop)."""
    settings: dict[str, Any] = {
        "host": entry.host,
        "http_timeout_seconds": timeout_s,
        "retry_timeout_seconds": RETRY_TIMEOUT_S,
        "max_connection_pools": connections,
        "max_connections_per_pool": connections,
        "clock": SkipWaits(RETRY_TIMEOUT_S),
    }
    if pool is not None:
        settings["http_adapter"] = pool
    if entry.auth == "pat":
        settings.update(auth_type="pat", token=_secret(entry.token, "token"))
        strategy: CredentialsStrategy = RefusalsAsAuth()
    elif entry.auth == "oauth-m2m":
        settings.update(
            auth_type="oauth-m2m",
            client_id=_required(entry.client_id, "client_id"),
            client_secret=_secret(entry.client_secret, "client_secret"),
        )
        strategy = RefusalsAsAuth()
    elif entry.auth == "azure":
        if credential is None:
            raise ValueError("azure auth needs the estate's credential")
        settings["auth_type"] = ENTRA_AUTH_TYPE  # set, so stray DATABRICKS_* variables are ignored
        strategy = entra_strategy(credential, loop, timeout_s)
    else:
        raise ValueError(f"unknown Databricks auth {entry.auth!r}")
    return WorkspaceClient(config=Config(credentials_strategy=strategy, **settings))


def _required(value: str | None, what: str) -> str:
    if not value:
        raise ValueError(f"{what} is required for this auth type")
    return value


def _secret(value: SecretStr | None, what: str) -> str:
    return _required(value.get_secret_value() if value is not None else None, what)


class SkipWaits(Clock):
    """A clock for the SDK's retry loop that never sleeps: each wait moves the calling
    thread's time on by at least ``skip_s`` (the loop's whole budget), so the loop gives up
    after the first failure instead of retrying. Per thread, so calls on other threads keep
    their own deadlines."""

    def __init__(self, skip_s: float) -> None:
        self._skip_s = skip_s
        self._skipped = threading.local()

    def time(self) -> float:
        return time.time() + getattr(self._skipped, "seconds", 0.0)

    def sleep(self, seconds: float) -> None:
        skipped = getattr(self._skipped, "seconds", 0.0)
        self._skipped.seconds = skipped + max(seconds, self._skip_s)


class RefusalsAsAuth(CredentialsStrategy):
    """The SDK's own strategy for ``Config.auth_type``, its token-endpoint refusals raised as
    :class:`CredentialRefused` (the SDK reports them as ``ValueError("<code>: <summary>")``)."""

    def __init__(self) -> None:
        self._chosen = DefaultCredentials()

    def auth_type(self) -> str:
        return self._chosen.auth_type()

    def __call__(self, cfg: Config) -> CredentialsProvider:
        headers = self._chosen(cfg)

        def checked() -> dict[str, str]:
            try:
                return headers()
            except ValueError as exc:
                if _OAUTH_REFUSAL.match(str(exc)):
                    raise CredentialRefused(str(exc)) from None
                raise CredentialUnavailable(str(exc)) from None
            except NotImplementedError as exc:  # the SDK's word for an unparsable token answer
                raise CredentialUnavailable(str(exc)) from None

        return checked


def entra_strategy(
    credential: AsyncTokenCredential, loop: asyncio.AbstractEventLoop, timeout_s: float
) -> CredentialsStrategy:
    """Entra ID bearer tokens for the workspace API from an azure-identity async credential
    living on ``loop`` (called by the SDK on worker threads, never on ``loop`` itself). A
    failed token request is the :class:`PlatformError` ADF's would be (``bearer_token``)."""

    def headers_for(cfg: Config) -> CredentialsProvider:
        host = cfg.host

        def headers() -> dict[str, str]:
            asked = bearer_token(credential, ENTRA_SCOPE, f"Databricks {host}: Entra ID")
            future = asyncio.run_coroutine_threadsafe(asked, loop)
            try:
                return {"Authorization": f"Bearer {future.result(timeout_s)}"}
            except TimeoutError:
                future.cancel()
                raise CredentialUnavailable(f"Entra ID: no token within {timeout_s} s") from None

        return headers

    return credentials_strategy(ENTRA_AUTH_TYPE, ["host"])(headers_for)
