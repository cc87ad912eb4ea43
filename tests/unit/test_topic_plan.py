"""The topic plan: one spec per topic the worker uses, its policy by kind, what an existing
topic does wrong, what an Event Hubs tier cannot hold, and the commands an admin runs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pipemedic import cli, topic_plan
from pipemedic.worker import planned_topics
from streams.policy.topic_plan import (
    COMPACT,
    DELETE,
    Observed,
    TopicSpec,
    differences,
    event_hubs_warnings,
    kind_of,
    plan_topics,
    tier_named,
)
from streams.settings import Settings


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("PIPEMEDIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIPEMEDIC_DATA_DIR", str(tmp_path / "data"))


@pytest.mark.parametrize(
    ("name", "kind", "policy"),
    [
        ("pipemedic-dedup-changelog", "changelog", COMPACT),
        ("shadow-pipemedic-chains-changelog", "changelog", COMPACT),
        ("control", "control", COMPACT),
        ("shadow-control", "control", COMPACT),
        ("dead-letter", "dead_letter", DELETE),
        ("shadow-dead-letter", "dead_letter", DELETE),
        ("alerts-raw", "stream", DELETE),
        ("delay-30s", "stream", DELETE),
        ("action-retry-pipeline", "stream", DELETE),
    ],
)
def test_kind_and_policy_by_name(name: str, kind: str, policy: str) -> None:
    assert kind_of(name) == kind
    (spec,) = plan_topics(
        [name],
        partitions=6,
        replication_factor=3,
        retention_hours=168,
        dead_letter_retention_hours=720,
    )
    assert (spec.kind, spec.cleanup_policy, spec.partitions, spec.replication_factor) == (
        kind,
        policy,
        6,
        3,
    )
    expected_hours = {COMPACT: None}.get(policy, 720 if kind == "dead_letter" else 168)
    assert spec.retention_hours == expected_hours


def test_kafka_configs_by_policy() -> None:
    changelog, dead = plan_topics(
        ["a-changelog", "dead-letter"],
        partitions=1,
        replication_factor=1,
        retention_hours=1,
        dead_letter_retention_hours=2,
    )
    assert changelog.kafka_configs() == {"cleanup.policy": "compact"}
    assert dead.kafka_configs() == {"cleanup.policy": "delete", "retention.ms": "7200000"}


def test_the_plan_is_every_planned_topic_of_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, partitions=8, replication_factor=2)
    specs = topic_plan.plan_for(settings)
    assert [s.name for s in specs] == list(dict.fromkeys(planned_topics(settings)))
    changelogs = [s for s in specs if s.name.endswith("-changelog")]
    assert len(changelogs) >= 3 and {s.cleanup_policy for s in changelogs} == {COMPACT}
    assert {s.partitions for s in specs} == {8} and {s.replication_factor for s in specs} == {2}


SPEC = TopicSpec("app-dedup-changelog", "changelog", 4, COMPACT, None, 3)


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (Observed(SPEC.name, 4, 3, "compact"), []),
        (Observed(SPEC.name, 4, 3, None), []),  # the broker did not say: unchecked
        (
            Observed(SPEC.name, 4, 3, "delete"),
            ["topic app-dedup-changelog: cleanup.policy=delete, the plan says compact"],
        ),
        (
            Observed(SPEC.name, 4, 3, ""),
            ["cleanup.policy=delete (the broker's default), the plan says compact"],
        ),
        (Observed(SPEC.name, 4, 3, "compact,delete"), ["cleanup.policy=compact,delete"]),
        (
            Observed(SPEC.name, 2, 3, "compact"),
            ["app-dedup-changelog: 2 partitions, the plan says 4"],
        ),
        (Observed(SPEC.name, 4, 1, "compact"), ["replication factor 1, the plan says 3"]),
        (Observed(SPEC.name, 4, 5, "compact"), []),  # more copies than planned: fine
        (
            Observed(SPEC.name, 8, 1, "delete"),
            ["8 partitions", "cleanup.policy=delete", "replication factor 1"],
        ),
    ],
)
def test_differences_name_the_topic_and_what_differs(seen: Observed, expected: list[str]) -> None:
    found = differences(SPEC, seen)
    assert len(found) == len(expected), found
    for line, part in zip(found, expected, strict=True):
        assert part in line and line.startswith(f"topic {SPEC.name}: ")


def test_a_deleting_topic_accepts_the_brokers_default() -> None:
    raw = TopicSpec("alerts-raw", "stream", 4, DELETE, 168, 1)
    assert differences(raw, Observed("alerts-raw", 4, 1, "")) == ()
    assert differences(raw, Observed("alerts-raw", 4, 1, "compact"))


def specs_of(count: int, *, retention: int = 168) -> tuple[TopicSpec, ...]:
    names = [f"t{i}" for i in range(count - 1)] + ["app-chains-changelog"]
    return plan_topics(
        names,
        partitions=4,
        replication_factor=3,
        retention_hours=retention,
        dead_letter_retention_hours=retention,
    )


def test_event_hubs_standard_holds_ten() -> None:
    standard = tier_named("standard")
    assert event_hubs_warnings(specs_of(10), standard) == ()
    (warning,) = event_hubs_warnings(specs_of(11), standard)
    assert "11 event hubs needed, Event Hubs Standard allows 10 in a namespace" in warning
    assert event_hubs_warnings(specs_of(11), tier_named("premium")) == ()


def test_event_hubs_retention_and_compaction_by_tier() -> None:
    (warning,) = event_hubs_warnings(specs_of(2, retention=720), tier_named("standard"))
    assert "retention 720 h is more than Standard allows (168 h)" in warning
    assert event_hubs_warnings(specs_of(2, retention=720), tier_named("premium")) == ()
    basic = event_hubs_warnings(specs_of(2), tier_named("basic"))
    assert any("no Kafka endpoint" in w for w in basic)
    assert any("cannot compact: app-chains-changelog" in w for w in basic)


def test_az_cli_commands() -> None:
    specs = plan_topics(
        ["alerts-raw", "dead-letter", "app-dedup-changelog"],
        partitions=4,
        replication_factor=3,
        retention_hours=168,
        dead_letter_retention_hours=720,
    )
    script = topic_plan.az_cli(specs, tier_named("standard"), 24)
    commands = script.replace("\\\n", " ").splitlines()
    creates = [c for c in commands if c.startswith("az eventhubs eventhub create")]
    assert len(creates) == 3
    raw, dead, changelog = (re.sub(r"\s+", " ", c) for c in creates)
    assert "--name alerts-raw --partition-count 4" in raw
    assert "--cleanup-policy Delete --retention-time-in-hours 168" in raw
    assert "--retention-time-in-hours 168" in dead  # Standard's maximum, not 720
    assert "--cleanup-policy Compact --tombstone-retention-time-in-hours 24" in changelog
    assert "retention-time-in-hours" not in changelog.replace("tombstone-retention", "")
    assert "# WARNING: dead-letter: retention 720 h" in script


def test_bicep_has_one_event_hub_per_topic() -> None:
    specs = specs_of(3)
    text = topic_plan.bicep(specs, tier_named("premium"), 168)
    assert text.count("'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {") == 3
    assert "resource hub_app_chains_changelog" in text
    assert "cleanupPolicy: 'Compact'" in text and "cleanupPolicy: 'Delete'" in text
    assert "param namespaceName string" in text and "WARNING" not in text


def test_kafka_commands() -> None:
    text = topic_plan.kafka_topics_sh(specs_of(2))
    lines = [line for line in text.splitlines() if line.startswith("kafka-topics.sh")]
    assert len(lines) == 2
    assert "--topic t0 --partitions 4 --replication-factor 3" in lines[0]
    assert "--config cleanup.policy=delete --config retention.ms=604800000" in lines[0]
    assert lines[1].endswith("--config cleanup.policy=compact")


def test_plan_command_json_counts_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["topics", "plan", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["count"] == len(plan["topics"]) > 10
    assert not plan["event_hubs"]["fits"]
    assert any("Standard allows 10" in w for w in plan["event_hubs"]["warnings"])
    assert {t["cleanup_policy"] for t in plan["topics"] if t["kind"] == "changelog"} == {COMPACT}


def test_plan_command_table_and_list_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["topics", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert cli.main(["topics", "plan"]) == 0
    table = capsys.readouterr().out
    assert f"{len(names)} topics" in table
    assert all(name in table for name in names)
