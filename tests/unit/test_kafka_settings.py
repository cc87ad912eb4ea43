"""One place builds the Kafka client settings: Event Hubs SASL as the worker has it, and the
topic prefix on every topic and the consumer group."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from aiokafka.abc import AbstractTokenProvider
from azure.core.credentials import AccessToken
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from pipemedic import kafka
from pipemedic.kafka import client_options, options
from pipemedic.worker import planned_topics
from streams import broker
from streams.app import build_topology, changelog_topics, create_app
from streams.policy import routing
from streams.settings import Settings

CONNECTION_STRING = (
    "Endpoint=sb://contoso-ns.servicebus.windows.net/;"
    "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0"
)


EVENT_HUBS = "kafka://contoso-ns.servicebus.windows.net:9093"
# every client: idle and metadata ages below Event Hubs' 240 s idle close
AGES = {"connections_max_idle_ms": 180_000, "metadata_max_age_ms": 180_000}


def event_hubs_plain() -> Settings:
    return Settings(
        broker_url=EVENT_HUBS,
        broker_sasl_username="$ConnectionString",
        broker_sasl_password=SecretStr(CONNECTION_STRING),
    )


def check_tls(produced: dict) -> None:
    context = produced.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_event_hubs_connection_string_gives_sasl_plain_over_tls() -> None:
    produced = client_options(event_hubs_plain())
    plain = {
        "bootstrap_servers": ["contoso-ns.servicebus.windows.net:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "$ConnectionString",
        "sasl_plain_password": CONNECTION_STRING,
        **AGES,
    }
    for kind, extra in (
        ("consumer", {}),
        ("admin", {}),
        ("producer", {"max_request_size": 1_000_000}),  # Event Hubs' 1 MB publication limit
    ):
        kwargs = options(produced, kind)
        check_tls(kwargs)
        assert kwargs == {**plain, **extra}, kind


def test_entra_id_gives_oauthbearer_with_a_namespace_token(monkeypatch) -> None:
    asked: list[str] = []

    class FakeCredential:
        def get_token(self, *scopes: str) -> AccessToken:
            asked.extend(scopes)
            return AccessToken("entra-token", 4_102_444_800)

    monkeypatch.setattr(broker, "entra_credential", lambda settings: FakeCredential())
    settings = Settings(broker_url=EVENT_HUBS, broker_sasl_mechanism="OAUTHBEARER")
    for kind in ("consumer", "admin", "producer"):
        kwargs = options(client_options(settings), kind)
        check_tls(kwargs)
        provider = kwargs.pop("sasl_oauth_token_provider")
        assert isinstance(provider, AbstractTokenProvider)
        assert kwargs == {
            "bootstrap_servers": ["contoso-ns.servicebus.windows.net:9093"],
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            **AGES,
            **({"max_request_size": 1_000_000} if kind == "producer" else {}),
        }, kind
    assert asyncio.run(provider.token()) == "entra-token"
    assert asked == ["https://contoso-ns.servicebus.windows.net/.default"]


@pytest.mark.parametrize(
    ("choice", "client_id", "expected"),
    [
        ("default", "", DefaultAzureCredential),
        ("managed_identity", "", ManagedIdentityCredential),
        ("managed_identity", "0000-user-assigned", ManagedIdentityCredential),
    ],
)
def test_entra_credentials_are_azure_identitys(choice: str, client_id: str, expected) -> None:
    settings = Settings(
        broker_url=EVENT_HUBS,
        broker_sasl_mechanism="OAUTHBEARER",
        broker_entra_credential=choice,
        broker_entra_client_id=client_id,
    )
    assert isinstance(broker.entra_credential(settings), expected)  # no token is fetched


def test_the_worker_gets_the_same_settings_from_faust() -> None:
    app = create_app(event_hubs_plain(), (5,))
    conf = app.conf
    assert conf.broker_credentials.username == "$ConnectionString"
    assert conf.broker_credentials.password == CONNECTION_STRING
    assert conf.consumer_connections_max_idle_ms == conf.producer_connections_max_idle_ms == 180_000
    assert conf.consumer_metadata_max_age_ms == conf.producer_metadata_max_age_ms == 180_000
    assert conf.producer_max_request_size == 1_000_000
    worker_auth = credentials_to_aiokafka_auth(conf.broker_credentials)
    assert worker_auth["sasl_mechanism"] == "PLAIN"
    assert worker_auth["security_protocol"] == "SASL_SSL"


def test_aiokafka_takes_every_clients_settings() -> None:
    """The clients are built (not started: no connection) from the options as given."""

    async def build() -> list[object]:
        client = client_options(event_hubs_plain())
        made = [kafka.producer(client), kafka.consumer(client, "t"), kafka.admin(client)]
        for each in made:
            if hasattr(each, "close"):
                await each.close()
        return made

    assert len(asyncio.run(build())) == 3
    # a caller (replay asks for 4 MiB) may lower the request-size limit, never raise it
    client = client_options(event_hubs_plain())
    assert kafka.producer_options(client, max_request_size=4 << 20)["max_request_size"] == 1_000_000
    assert kafka.producer_options(client, max_request_size=1000)["max_request_size"] == 1000
    assert kafka.producer_options("127.0.0.1:1", max_request_size=4 << 20)["max_request_size"] == (
        4 << 20
    )


def test_plain_broker_and_several_servers() -> None:
    produced = options(client_options(Settings(broker_url="kafka://a.example:9092;b.example")))
    assert produced == {
        "bootstrap_servers": ["a.example:9092", "b.example:9092"],
        "security_protocol": "PLAINTEXT",
        **AGES,
    }
    assert options("127.0.0.1:1234") == {"bootstrap_servers": "127.0.0.1:1234"}


def test_topic_prefix_names_every_topic_and_the_group(tmp_path) -> None:
    plain = Settings(data_dir=tmp_path)
    shadow = Settings(data_dir=tmp_path, topic_prefix="shadow-")
    assert planned_topics(shadow) == tuple(f"shadow-{t}" for t in planned_topics(plain))
    changelogs = changelog_topics(shadow)
    assert "shadow-pipemedic-dedup-changelog" in changelogs
    assert changelogs == tuple(f"shadow-{t}" for t in changelog_topics(plain))
    assert routing.group_id(shadow.app_id, shadow.topic_prefix) == "shadow-pipemedic"
    topology = build_topology(shadow, (1, 5))
    assert topology.app.conf.id == "shadow-pipemedic"
    assert {
        t.get_topic_name() for t in (topology.raw, topology.outcomes, topology.dead_letter)
    } == {
        "shadow-alerts-raw",
        "shadow-outcomes",
        "shadow-dead-letter",
    }
    assert {t.get_topic_name() for t in topology.delays.values()} == {
        "shadow-delay-1s",
        "shadow-delay-5s",
    }
    # every topic the topology holds, whatever stages are added later
    held = [v for v in vars(topology).values() if hasattr(v, "get_topic_name")]
    held += [t for v in vars(topology).values() if isinstance(v, dict) for t in v.values()]
    names = [t.get_topic_name() for t in held if hasattr(t, "get_topic_name")]
    assert len(names) > 10 and all(n.startswith("shadow-") for n in names), names
