"""``pipemedic topics create`` on the embedded broker: the plan applied, existing topics checked.

The changelogs and ``control`` are created compacted, the rest with the delete policy and
their retention; a second run finds everything as planned; a changelog that already exists
with ``cleanup.policy=delete`` (or with the wrong partition count) is refused, one line naming
the topic and what differs, exit 1. Tansu answers DescribeConfigs with the configs a topic was
created with, so the policy check runs against what the broker says.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipemedic import cli
from pipemedic.embedded import EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as started:
        yield started


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, broker: EmbeddedBroker) -> None:
    for name in [n for n in os.environ if n.startswith("PIPEMEDIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIPEMEDIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIPEMEDIC_BROKER_URL", broker.url)
    monkeypatch.setenv("PIPEMEDIC_REPLICATION_FACTOR", "1")  # one broker


async def described(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """topic -> (partitions, configs) as the broker answers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    finally:
        await admin.close()
    configs = {
        r["resource_name"]: {e["config_names"]: e["config_value"] for e in r["config_entries"]}
        for answer in answers
        for r in answer.to_object()["resources"]
    }
    return {n: (partitions[n], configs.get(n, {})) for n in names}


async def precreate(bootstrap: str, topics: list[NewTopic]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(topics)
    finally:
        await admin.close()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_changelogs_are_created_compacted_and_a_second_run_finds_the_plan(
    env: None, broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("PIPEMEDIC_TOPIC_PREFIX", "fresh-")
    code, out, _ = run(["topics", "--list"], capsys)
    names = out.split()
    assert code == 0 and len(names) > 10

    code, out, err = run(["topics", "create"], capsys)
    assert code == 0, err
    assert f"{len(names)} topics planned: {len(names)} created" in out

    seen = asyncio.run(described(broker.bootstrap, names))
    for name in names:
        partitions, configs = seen[name]
        assert partitions == 4, name
        compacted = name.endswith("-changelog") or name == "fresh-control"
        assert configs.get("cleanup.policy") == ("compact" if compacted else "delete"), name
        if not compacted:
            hours = 720 if name == "fresh-dead-letter" else 168
            assert configs.get("retention.ms") == str(hours * 3_600_000), name
    assert sum(n.endswith("-changelog") for n in names) >= 3

    # bare `topics` is `topics create`: everything exists now, as planned
    code, out, err = run(["topics"], capsys)
    assert code == 0, err
    assert f"0 created, {len(names)} already there as planned, 0 problem(s)" in out


def test_an_existing_changelog_that_deletes_is_refused(
    env: None, broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("PIPEMEDIC_TOPIC_PREFIX", "old-")
    asyncio.run(
        precreate(
            broker.bootstrap,
            [
                NewTopic(
                    "old-pipemedic-dedup-changelog",
                    4,
                    1,
                    topic_configs={"cleanup.policy": "delete"},
                ),
                NewTopic(
                    "old-pipemedic-chains-changelog",
                    2,
                    1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
            ],
        )
    )
    code, out, err = run(["topics", "create"], capsys)
    assert code == cli.EXIT_FAILURE
    problems = [line for line in err.splitlines() if line.startswith("pipemedic: error: ")]
    assert problems == [
        "pipemedic: error: topic old-pipemedic-dedup-changelog: cleanup.policy=delete, the plan "
        "says compact (its records would be deleted after retention: a changelog or control "
        "topic must be compacted)",
        "pipemedic: error: topic old-pipemedic-chains-changelog: 2 partitions, the plan says 4",
    ]
    assert "2 problem(s)" in out
    # the rest of the plan was still created, compacted where it must be
    notices = asyncio.run(described(broker.bootstrap, ["old-pipemedic-notices-changelog"]))
    assert notices["old-pipemedic-notices-changelog"] == (4, {"cleanup.policy": "compact"})
    # and a refused topic stays refused: nothing was changed behind the operator's back
    code, _, err = run(["topics", "create"], capsys)
    assert (
        code == cli.EXIT_FAILURE and "old-pipemedic-dedup-changelog: cleanup.policy=delete" in err
    )
