"""Azure credentials, named once in the estate and built with ``azure-identity`` (async).

Decides three things the library leaves to us:

* **Which class, from a typed spec.** Each estate entry under ``credentials:`` is one of the
  specs below (``type:`` picks it); :class:`Credentials` builds the matching
  ``azure.identity.aio`` credential on first use and closes them all at the end. Factories and
  Databricks workspaces name a credential; several tenants and app registrations live side
  by side. Token caching and refresh (ahead of expiry) are the library's.
* **One token request at a time.** The library caches but does not coalesce: hundreds of
  calls that find the cache empty at once would each ask Azure AD. :class:`SharedTokens`
  lets concurrent callers for the same scopes share one ``get_token``; it holds no token.
* **No waiting inside the library.** azure-core retries token requests up to 10 times with
  backoff (5 for managed identity); a worker defers a failed step through its delay tiers
  instead, so credentials are built with ``retry_total=0`` and explicit timeouts.

A failed token request becomes a :class:`PlatformError` (:func:`bearer_token`): a refused
secret, certificate or assertion, or no identity available, is :attr:`ErrorKind.AUTH` (a
human's job, never retried in a loop); a 5xx/429 from the token endpoint or a network
failure is :attr:`ErrorKind.TRANSIENT`.

TLS: the credentials trust the system CAs, or the PEM bundle named by
``PIPEMEDIC_CA_BUNDLE`` (``connection_verify``). A secret written ``env:NAME`` or
``file:/path`` is read when the estate is loaded (:data:`SecretRef`) and kept in a
``SecretStr``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from streams.adapters.errors import ErrorKind, PlatformError

ARM_SCOPE = "https://management.azure.com/.default"
# the Azure Databricks first-party application: Entra ID tokens for workspaces use it
DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"


def _resolve_secret(value: Any) -> Any:
    """``env:NAME`` reads the environment, ``file:/path`` a file (one trailing newline
    dropped); anything else is the secret itself (fine for tests, not for production)."""
    if isinstance(value, SecretStr) or not isinstance(value, str):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text().removesuffix("\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


SecretRef = Annotated[SecretStr, BeforeValidator(_resolve_secret)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientSecretSpec(_Spec):
    type: Literal["client_secret"]
    tenant_id: str
    client_id: str
    client_secret: SecretRef
    authority: str | None = None  # default: AZURE_AUTHORITY_HOST, else login.microsoftonline.com


class CertificateSpec(_Spec):
    type: Literal["certificate"]
    tenant_id: str
    client_id: str
    certificate_path: str  # PEM (or PKCS12) holding the certificate and its private key
    password: SecretRef | None = None
    authority: str | None = None


class ManagedIdentitySpec(_Spec):
    type: Literal["managed_identity"]
    client_id: str | None = None  # a user-assigned identity; None: the system-assigned one


class WorkloadIdentitySpec(_Spec):
    type: Literal["workload_identity"]
    # None: AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_FEDERATED_TOKEN_FILE, as AKS injects them
    tenant_id: str | None = None
    client_id: str | None = None
    token_file: str | None = None
    authority: str | None = None


class DefaultSpec(_Spec):
    type: Literal["default"]
    authority: str | None = None
    managed_identity_client_id: str | None = None


CredentialSpec = Annotated[
    ClientSecretSpec | CertificateSpec | ManagedIdentitySpec | WorkloadIdentitySpec | DefaultSpec,
    Field(discriminator="type"),
]
CREDENTIAL_TYPES = (
    "client_secret",
    "certificate",
    "managed_identity",
    "workload_identity",
    "default",
)


def build_credential(
    spec: CredentialSpec, *, ca_bundle: str | None = None, timeout_s: float = 20.0
) -> AsyncTokenCredential:
    """The ``azure.identity.aio`` credential a spec describes (no I/O happens here)."""
    from azure.identity import aio

    transport: dict[str, Any] = {
        "connection_timeout": timeout_s,
        "read_timeout": timeout_s,
        "retry_total": 0,
    }
    if ca_bundle:
        transport["connection_verify"] = ca_bundle
    authority = {"authority": spec.authority} if getattr(spec, "authority", None) else {}
    match spec:
        case ClientSecretSpec():
            return aio.ClientSecretCredential(
                spec.tenant_id,
                spec.client_id,
                spec.client_secret.get_secret_value(),
                **authority,
                **transport,
            )
        case CertificateSpec():
            password = spec.password.get_secret_value() if spec.password else None
            return aio.CertificateCredential(
                spec.tenant_id,
                spec.client_id,
                spec.certificate_path,
                password=password,
                **authority,
                **transport,
            )
        case ManagedIdentitySpec():
            return aio.ManagedIdentityCredential(client_id=spec.client_id, **transport)
        case WorkloadIdentitySpec():
            given = {
                "tenant_id": spec.tenant_id,
                "client_id": spec.client_id,
                "token_file_path": spec.token_file,
            }
            return aio.WorkloadIdentityCredential(
                **{k: v for k, v in given.items() if v is not None}, **authority, **transport
            )
        case DefaultSpec():
            chosen = (
                {"managed_identity_client_id": spec.managed_identity_client_id}
                if spec.managed_identity_client_id
                else {}
            )
            return aio.DefaultAzureCredential(**authority, **chosen, **transport)
    raise TypeError(f"not a credential spec: {spec!r}")  # pragma: no cover


class SharedTokens(AsyncTokenCredential):
    """A credential whose concurrent ``get_token`` calls for the same scopes share one
    request. Caching stays the wrapped credential's; a failure reaches every waiter and is
    not kept, so the next call asks again."""

    def __init__(self, credential: AsyncTokenCredential) -> None:
        self.credential = credential
        self._pending: dict[tuple[str, ...], asyncio.Future[AccessToken]] = {}

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if kwargs:  # claims, tenant_id, CAE: not worth sharing
            return await self.credential.get_token(*scopes, **kwargs)
        pending = self._pending.get(scopes)
        if pending is None:
            pending = asyncio.ensure_future(self.credential.get_token(*scopes))
            self._pending[scopes] = pending
            pending.add_done_callback(lambda _: self._pending.pop(scopes, None))
        # shield: one caller giving up must not cancel the request the others wait on
        return await asyncio.shield(pending)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return await self.credential.get_token_info(*scopes, options=options)  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.credential.close()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Credentials:
    """The estate's named credentials, each built once on first use; :meth:`close` ends
    them all (their aiohttp sessions)."""

    def __init__(
        self,
        specs: Mapping[str, CredentialSpec],
        *,
        ca_bundle: str | None = None,
        timeout_s: float = 20.0,
    ) -> None:
        self._specs = dict(specs)
        self._ca_bundle = ca_bundle
        self._timeout_s = timeout_s
        self._built: dict[str, SharedTokens] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def credential_for(self, name: str) -> SharedTokens:
        """The credential named ``name`` in the estate (an ``AsyncTokenCredential``)."""
        built = self._built.get(name)
        if built is None:
            spec = self._specs.get(name)
            if spec is None:
                raise PlatformError(ErrorKind.AUTH, f"credential {name!r} is not in the estate")
            try:
                credential = build_credential(
                    spec, ca_bundle=self._ca_bundle, timeout_s=self._timeout_s
                )
            except (ValueError, TypeError, OSError) as exc:  # e.g. no certificate file
                raise PlatformError(
                    ErrorKind.AUTH, f"credential {name!r} cannot be used: {_first_line(exc)}"
                ) from None
            built = self._built[name] = SharedTokens(credential)
        return built

    async def close(self) -> None:
        built, self._built = self._built, {}
        for credential in built.values():
            await credential.close()


async def bearer_token(credential: AsyncTokenCredential, scope: str, what: str) -> str:
    """A token for ``scope``, or the :class:`PlatformError` its failure means."""
    try:
        return (await credential.get_token(scope)).token
    except CredentialUnavailableError as exc:
        raise PlatformError(ErrorKind.AUTH, f"{what}: no credential available: {exc}") from None
    except ClientAuthenticationError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status is not None and (status >= 500 or status in (408, 429)):
            raise PlatformError(
                ErrorKind.TRANSIENT, f"{what}: token endpoint HTTP {status}", status=status
            ) from None
        raise PlatformError(
            ErrorKind.AUTH, f"{what}: token refused: {_first_line(exc)}", status=status
        ) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise PlatformError(
            ErrorKind.TRANSIENT, f"{what}: token endpoint unreachable: {_first_line(exc)}"
        ) from None
    except (ValueError, OSError) as exc:  # a certificate or CA file unreadable, not PEM, ...
        raise PlatformError(
            ErrorKind.AUTH, f"{what}: credential unusable: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
