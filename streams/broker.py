"""Every Kafka client's settings, built in one place: the worker's Faust app and each command.

:func:`client_settings` reads the broker URL and credentials once; its :class:`ClientSettings`
hands the same values to Faust (:meth:`ClientSettings.faust_options`) and to aiokafka's
producer, consumer and admin client (:meth:`ClientSettings.producer` and its siblings), so no
client spells a security option or a timeout of its own.

Why the values, all from Event Hubs' Kafka endpoint page (see ``platforms.md``):

* **Idle connections.** Event Hubs closes a connection idle for 240 s; a client that reuses
  it fails its next request. ``connections_max_idle_ms`` and ``metadata_max_age_ms`` are
  180 s (Kafka's defaults are 540 s and 300 s), for every client. Harmless on Kafka.
* **Request size.** A publication over 1 MB closes the connection; producers are held to
  1,000,000 bytes (the recommended ``max.request.size``), which Kafka's default broker limit
  accepts too.
* **Credentials.** SASL PLAIN over TLS with the literal user ``$ConnectionString`` and the
  namespace connection string as password; or Entra ID: SASL OAUTHBEARER with a token for
  ``https://<namespace>.servicebus.windows.net/.default`` from an azure-identity credential
  (``DefaultAzureCredential``, or ``ManagedIdentityCredential`` with an optional client id for
  a user-assigned identity). azure-identity caches the token and refreshes it ahead of expiry;
  aiokafka asks :class:`EntraTokenProvider` for it at every SASL handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.abc import AbstractTokenProvider

from streams.settings import Settings

DEFAULT_PORT = 9092
# Event Hubs closes connections idle for 240 s: stay well below for idle and metadata ages
IDLE_MS = 180_000
METADATA_MAX_AGE_MS = 180_000
# Event Hubs refuses publications over 1 MB (and closes the connection)
MAX_REQUEST_BYTES = 1_000_000


class EntraTokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens for the broker from an azure-identity (synchronous) credential.

    The credential's own cache answers most calls; a fetch runs on a thread, as aiokafka's
    interface allows, so a slow token endpoint never blocks the event loop."""

    def __init__(self, credential: Any, scope: str) -> None:
        self.credential = credential
        self.scope = scope

    async def token(self) -> str:
        found = await asyncio.to_thread(self.credential.get_token, self.scope)
        return found.token


def event_hubs_scope(host: str) -> str:
    """The Entra ID scope of a namespace's Kafka endpoint, from its host name."""
    return f"https://{host}/.default"


def entra_credential(settings: Settings) -> Any:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = settings.broker_entra_client_id or None
    if settings.broker_entra_credential == "managed_identity":
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)


def broker_credentials(settings: Settings, host: str = "") -> faust.types.auth.CredentialsT | None:
    """Faust credentials for the broker: SASL PLAIN when a user name is set, Entra ID
    (OAUTHBEARER) when asked for; None for a plain broker. Both always over TLS."""
    if settings.broker_sasl_mechanism == "OAUTHBEARER":
        host = host or servers(settings)[0].rpartition(":")[0]
        provider = EntraTokenProvider(entra_credential(settings), event_hubs_scope(host))
        return faust.OAuthCredentials(oauth_cb=provider, ssl_context=ssl.create_default_context())
    if not settings.broker_sasl_username:
        return None
    return faust.SASLCredentials(
        username=settings.broker_sasl_username,
        password=settings.broker_sasl_password.get_secret_value(),
        ssl_context=ssl.create_default_context(),
        mechanism="PLAIN",
    )


def servers(settings: Settings) -> list[str]:
    """``host:port`` of each bootstrap server, parsed from the broker URL as Faust does."""
    from faust.transport.drivers.aiokafka import server_list
    from faust.utils.urls import urllist

    return server_list(urllist(settings.broker_url, default_scheme="kafka"), DEFAULT_PORT)


@dataclass(frozen=True)
class ClientSettings:
    bootstrap_servers: tuple[str, ...]
    credentials: Any  # faust credentials or None
    connections_max_idle_ms: int = IDLE_MS
    metadata_max_age_ms: int = METADATA_MAX_AGE_MS
    max_request_size: int = MAX_REQUEST_BYTES

    def common(self) -> dict[str, Any]:
        """What every aiokafka client takes: servers, security, idle and metadata ages."""
        from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

        return {
            "bootstrap_servers": list(self.bootstrap_servers),
            "connections_max_idle_ms": self.connections_max_idle_ms,
            "metadata_max_age_ms": self.metadata_max_age_ms,
            **credentials_to_aiokafka_auth(self.credentials),
        }

    def producer(self) -> dict[str, Any]:
        return {**self.common(), "max_request_size": self.max_request_size}

    def consumer(self) -> dict[str, Any]:
        return self.common()

    def admin(self) -> dict[str, Any]:
        return self.common()

    def faust_options(self) -> dict[str, Any]:
        """The same values as Faust app settings (its worker consumer and producer)."""
        return {
            "broker_credentials": self.credentials,
            "consumer_connections_max_idle_ms": self.connections_max_idle_ms,
            "consumer_metadata_max_age_ms": self.metadata_max_age_ms,
            "producer_connections_max_idle_ms": self.connections_max_idle_ms,
            "producer_metadata_max_age_ms": self.metadata_max_age_ms,
            "producer_max_request_size": self.max_request_size,
        }


def client_settings(settings: Settings) -> ClientSettings:
    """The one place a Kafka client's settings come from (worker and every command)."""
    found = servers(settings)
    host = found[0].rpartition(":")[0]
    return ClientSettings(
        bootstrap_servers=tuple(found), credentials=broker_credentials(settings, host)
    )
