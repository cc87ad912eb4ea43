"""One place builds the Kafka client settings: Event Hubs SASL as the worker has it, and the
topic prefix on every topic and the consumer group."""

from __future__ import annotations

import ssl

from pydantic import SecretStr

from pipemedic.kafka import client_options, options
from pipemedic.worker import planned_topics
from streams.app import build_topology, changelog_topics
from streams.policy import routing
from streams.settings import Settings

CONNECTION_STRING = (
    "Endpoint=sb://contoso-ns.servicebus.windows.net/;"
    "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0"
)


def test_event_hubs_connection_string_gives_sasl_plain_over_tls() -> None:
    settings = Settings(
        broker_url="kafka://contoso-ns.servicebus.windows.net:9093",
        broker_sasl_username="$ConnectionString",
        broker_sasl_password=SecretStr(CONNECTION_STRING),
    )
    produced = client_options(settings)
    assert produced["bootstrap_servers"] == ["contoso-ns.servicebus.windows.net:9093"]
    assert produced["security_protocol"] == "SASL_SSL"
    assert produced["sasl_mechanism"] == "PLAIN"
    assert produced["sasl_plain_username"] == "$ConnectionString"
    assert produced["sasl_plain_password"] == CONNECTION_STRING
    context = produced["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_plain_broker_and_several_servers() -> None:
    produced = client_options(Settings(broker_url="kafka://a.example:9092;b.example"))
    assert produced == {
        "bootstrap_servers": ["a.example:9092", "b.example:9092"],
        "security_protocol": "PLAINTEXT",
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
