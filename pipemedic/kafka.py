"""The Kafka client settings of every command that talks to the broker, built in one place.

``capture``, ``replay``, ``send``, ``topics`` and ``approve`` connect exactly as the worker
does: the bootstrap servers are parsed from ``PIPEMEDIC_BROKER_URL`` the way Faust parses its
``broker`` URL, and SASL PLAIN over TLS for Event Hubs comes from the worker's own
:func:`streams.app.broker_credentials`, turned into aiokafka arguments by Faust's own
conversion. A command never spells a security option itself.

The embedded broker and tests pass a bare ``host:port`` instead of settings; :func:`options`
accepts either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.settings import Settings

DEFAULT_PORT = 9092

ClientOptions = Mapping[str, Any]


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments (``bootstrap_servers`` and security) for ``settings``."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list
    from faust.utils.urls import urllist

    from streams.app import broker_credentials

    urls = urllist(settings.broker_url, default_scheme="kafka")
    return {
        "bootstrap_servers": server_list(urls, DEFAULT_PORT),
        **credentials_to_aiokafka_auth(broker_credentials(settings)),
    }


def options(broker: str | ClientOptions) -> dict[str, Any]:
    """Client options from settings' options or a bare ``host:port`` (embedded broker)."""
    if isinstance(broker, str):
        return {"bootstrap_servers": broker}
    return dict(broker)


def bootstrap_of(broker: str | ClientOptions) -> str:
    """The first bootstrap server, for messages and for helpers that take one address."""
    servers = options(broker)["bootstrap_servers"]
    return servers if isinstance(servers, str) else servers[0]


def producer(broker: str | ClientOptions, **kwargs: Any) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**options(broker), **kwargs)


def consumer(broker: str | ClientOptions, *topics: str, **kwargs: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, **options(broker), **kwargs)


def admin(broker: str | ClientOptions, **kwargs: Any) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**options(broker), **kwargs)
