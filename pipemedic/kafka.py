"""The Kafka clients of every command that talks to the broker, from the worker's settings.

``capture``, ``replay``, ``send``, ``topics``, ``approve`` and ``pause`` connect exactly as the
worker does: :func:`client_options` is :func:`streams.broker.client_settings`, the one place
that parses ``PIPEMEDIC_BROKER_URL`` and builds security (Event Hubs SASL PLAIN or Entra ID),
idle and metadata ages and the request-size limit for Faust and for aiokafka alike. A command
never spells a security option itself.

The embedded broker and tests pass a bare ``host:port`` instead of settings; :func:`options`
accepts either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.broker import ClientSettings, client_settings
from streams.settings import Settings

ClientOptions = Mapping[str, Any] | ClientSettings


def client_options(settings: Settings) -> ClientSettings:
    """Every client's settings for ``settings`` (:func:`streams.broker.client_settings`)."""
    return client_settings(settings)


def options(broker: str | ClientOptions, kind: str = "consumer") -> dict[str, Any]:
    """aiokafka keyword arguments for a ``kind`` of client (producer, consumer, admin) from
    settings' client settings, a mapping of them, or a bare ``host:port`` (embedded broker)."""
    if isinstance(broker, str):
        return {"bootstrap_servers": broker}
    if isinstance(broker, ClientSettings):
        return getattr(broker, kind)()
    return dict(broker)


def bootstrap_of(broker: str | ClientOptions) -> str:
    """The first bootstrap server, for messages and for helpers that take one address."""
    servers = options(broker)["bootstrap_servers"]
    return servers if isinstance(servers, str) else servers[0]


def producer_options(broker: str | ClientOptions, **kwargs: Any) -> dict[str, Any]:
    """A producer's arguments: ``kwargs`` may lower the request-size limit, never raise it."""
    settled = options(broker, "producer")
    if "max_request_size" in settled and "max_request_size" in kwargs:
        kwargs["max_request_size"] = min(kwargs["max_request_size"], settled["max_request_size"])
    return {**settled, **kwargs}


def producer(broker: str | ClientOptions, **kwargs: Any) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**producer_options(broker, **kwargs))


def consumer(broker: str | ClientOptions, *topics: str, **kwargs: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, **options(broker, "consumer"), **kwargs)


def admin(broker: str | ClientOptions, **kwargs: Any) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**options(broker, "admin"), **kwargs)
