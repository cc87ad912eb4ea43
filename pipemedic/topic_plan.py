"""``pipemedic topics plan`` and ``topics create``: the topic plan shown, and applied to Kafka.

The names come from :func:`pipemedic.worker.planned_topics` (the worker's own list, Faust's
changelogs included); partitions, policy, retention and copies from
:mod:`streams.policy.topic_plan`. ``plan`` prints it as a table, JSON, or what an admin runs:
``az eventhubs eventhub create`` commands or a Bicep file for Event Hubs (which does not let
clients create topics), ``kafka-topics.sh`` commands for Kafka. ``create`` creates what is
missing through aiokafka's admin client and checks what exists: partitions and copies from
the topic metadata, the cleanup policy from DescribeConfigs. A broker that does not answer
DescribeConfigs is said to, and its policies go unchecked.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.policy.topic_plan import (
    COMPACT,
    COMPACTION_NOTE,
    EventHubsTier,
    Observed,
    TopicSpec,
    differences,
    event_hubs_warnings,
    plan_topics,
    retention_on,
)
from streams.settings import Settings

FORMATS = ("table", "json", "az-cli", "bicep", "kafka")
BICEP_API = "2024-01-01"  # Microsoft.EventHub/namespaces/eventhubs


def plan_for(settings: Settings) -> tuple[TopicSpec, ...]:
    from pipemedic.worker import planned_topics

    return plan_topics(
        planned_topics(settings),
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        retention_hours=settings.topic_retention_hours,
        dead_letter_retention_hours=settings.dead_letter_retention_hours,
    )


# --- plan: what an admin reads or runs -------------------------------------------------


def table_rows(specs: Sequence[TopicSpec]) -> list[dict[str, Any]]:
    return [
        {
            "topic": s.name,
            "kind": s.kind,
            "partitions": s.partitions,
            "cleanup": s.cleanup_policy,
            "retention": "until replaced"
            if s.retention_hours is None
            else f"{s.retention_hours} h",
            "replicas": s.replication_factor,
        }
        for s in specs
    ]


def as_json(specs: Sequence[TopicSpec], tier: EventHubsTier) -> str:
    warnings = event_hubs_warnings(specs, tier)
    return json.dumps(
        {
            "count": len(specs),
            "topics": [s.as_json() for s in specs],
            "event_hubs": {
                "tier": tier.name,
                "max_event_hubs": tier.max_event_hubs,
                "fits": not warnings,
                "warnings": list(warnings),
                "compaction": COMPACTION_NOTE,
            },
        },
        indent=2,
    )


def _preamble(specs: Sequence[TopicSpec], tier: EventHubsTier, comment: str) -> list[str]:
    lines = [
        f"{comment} pipemedic topic plan: {len(specs)} event hubs, Event Hubs {tier.name.capitalize()}"
    ]
    lines += [f"{comment} WARNING: {w}" for w in event_hubs_warnings(specs, tier)]
    lines.append(f"{comment} note: {COMPACTION_NOTE}")
    return lines


def az_cli(specs: Sequence[TopicSpec], tier: EventHubsTier, tombstone_hours: int) -> str:
    """``az eventhubs eventhub create`` per topic, for ``$RESOURCE_GROUP``/``$NAMESPACE``."""
    lines = ["#!/bin/sh", *_preamble(specs, tier, "#"), "set -e"]
    lines.append(': "${RESOURCE_GROUP:?set RESOURCE_GROUP}" "${NAMESPACE:?set NAMESPACE}"')
    for spec in specs:
        args = [
            "az eventhubs eventhub create",
            '--resource-group "$RESOURCE_GROUP" --namespace-name "$NAMESPACE"',
            f"--name {shlex.quote(spec.name)} --partition-count {spec.partitions}",
        ]
        if spec.cleanup_policy == COMPACT:
            hours = min(tombstone_hours, tier.max_retention_hours)
            args.append(f"--cleanup-policy Compact --tombstone-retention-time-in-hours {hours}")
        else:
            args.append(
                f"--cleanup-policy Delete --retention-time-in-hours {retention_on(spec, tier)}"
            )
        lines.append(" \\\n  ".join(args))
    return "\n".join(lines) + "\n"


def bicep(specs: Sequence[TopicSpec], tier: EventHubsTier, tombstone_hours: int) -> str:
    """One ``Microsoft.EventHub/namespaces/eventhubs`` resource per topic, in an existing
    namespace named by the ``namespaceName`` parameter."""
    lines = [
        *_preamble(specs, tier, "//"),
        "param namespaceName string",
        "",
        f"resource namespace 'Microsoft.EventHub/namespaces@{BICEP_API}' existing = {{",
        "  name: namespaceName",
        "}",
    ]
    for spec in specs:
        if spec.cleanup_policy == COMPACT:
            hours = min(tombstone_hours, tier.max_retention_hours)
            retention = ["cleanupPolicy: 'Compact'", f"tombstoneRetentionTimeInHours: {hours}"]
        else:
            retention = [
                "cleanupPolicy: 'Delete'",
                f"retentionTimeInHours: {retention_on(spec, tier)}",
            ]
        symbol = "hub_" + "".join(c if c.isalnum() else "_" for c in spec.name)
        lines += [
            "",
            f"resource {symbol} 'Microsoft.EventHub/namespaces/eventhubs@{BICEP_API}' = {{",
            "  parent: namespace",
            f"  name: '{spec.name}'",
            "  properties: {",
            f"    partitionCount: {spec.partitions}",
            "    retentionDescription: {",
            *(f"      {line}" for line in retention),
            "    }",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def kafka_topics_sh(specs: Sequence[TopicSpec]) -> str:
    """``kafka-topics.sh --create`` per topic, for ``$BOOTSTRAP``."""
    lines = [f"# pipemedic topic plan: {len(specs)} topics", "set -e"]
    for spec in specs:
        configs = " ".join(f"--config {k}={v}" for k, v in spec.kafka_configs().items())
        lines.append(
            'kafka-topics.sh --bootstrap-server "${BOOTSTRAP:?set BOOTSTRAP}" --create '
            f"--if-not-exists --topic {shlex.quote(spec.name)} --partitions {spec.partitions} "
            f"--replication-factor {spec.replication_factor} {configs}"
        )
    return "\n".join(lines) + "\n"


# --- create: applied to a Kafka broker, existing topics checked --------------------------


@dataclass(frozen=True)
class Applied:
    created: tuple[str, ...]
    as_planned: tuple[str, ...]
    problems: tuple[str, ...]  # one line each; any means the plan does not hold
    notes: tuple[str, ...] = ()  # what could not be checked, and why


async def apply_plan(client: Any, specs: Sequence[TopicSpec]) -> Applied:
    """Create the missing topics of ``specs``, check the existing ones against them.
    ``client``: an address or client settings (:mod:`pipemedic.kafka`)."""
    from aiokafka.admin import NewTopic

    from pipemedic import kafka

    admin = kafka.admin(client)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        refused: dict[str, str] = {}
        if missing:
            answer = await admin.create_topics(
                [
                    NewTopic(
                        s.name, s.partitions, s.replication_factor, topic_configs=s.kafka_configs()
                    )
                    for s in missing
                ]
            )
            refused = _create_errors(answer)
        present = [s for s in specs if s.name in existing]
        observed, notes = await _describe(admin, [s.name for s in present])
    finally:
        await admin.close()
    problems = [f"topic {name}: not created: {why}" for name, why in refused.items()]
    checked = []
    for spec in present:
        seen = observed.get(spec.name)
        if isinstance(seen, str):
            problems.append(seen)
            continue
        found = differences(spec, seen)
        problems += found
        if not found:
            checked.append(spec.name)
    return Applied(
        created=tuple(s.name for s in missing if s.name not in refused),
        as_planned=tuple(checked),
        problems=tuple(problems),
        notes=tuple(notes),
    )


def _create_errors(answer: Any) -> dict[str, str]:
    """Topic -> why the broker did not create it (one that exists by now is no error)."""
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    found = {}
    response = answer.to_object()
    for topic in response.get("topic_errors", response.get("topics", [])):
        code = topic.get("error_code", 0)
        if code and for_code(code) is not TopicAlreadyExistsError:  # a worker was quicker
            name = topic.get("topic", topic.get("name", "?"))
            found[name] = topic.get("error_message") or for_code(code).__name__
    return found


async def _describe(admin: Any, names: list[str]) -> tuple[dict[str, Observed | str], list[str]]:
    """Each topic as the broker describes it (or one line saying why it cannot be), and notes
    on what went unchecked."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import KafkaError, for_code

    if not names:
        return {}, []
    found: dict[str, Observed | str] = {}
    for topic in await admin.describe_topics(names):
        name, code = topic["topic"], topic.get("error_code", 0)
        if code:
            found[name] = f"topic {name}: not described: {for_code(code).__name__}"
            continue
        partitions = topic.get("partitions", [])
        copies = min((len(p.get("replicas", [])) for p in partitions), default=0)
        found[name] = Observed(name=name, partitions=len(partitions), replication_factor=copies)
    notes: list[str] = []
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    try:
        answers = await admin.describe_configs(resources)
    except KafkaError as exc:
        return found, [
            f"cleanup.policy not checked: the broker does not answer DescribeConfigs ({exc!r})"
        ]
    for answer in answers:
        for resource in answer.to_object().get("resources", []):
            name = resource.get("resource_name", "")
            seen = found.get(name)
            if not isinstance(seen, Observed):
                continue
            if resource.get("error_code"):
                notes.append(
                    f"topic {name}: cleanup.policy not checked: "
                    f"{resource.get('error_message') or for_code(resource['error_code']).__name__}"
                )
                continue
            values = {
                e["config_names"]: e["config_value"] for e in resource.get("config_entries", [])
            }
            found[name] = Observed(
                name=name,
                partitions=seen.partitions,
                replication_factor=seen.replication_factor,
                cleanup_policy=values.get("cleanup.policy") or "",
            )
    unsaid = [n for n, o in found.items() if isinstance(o, Observed) and o.cleanup_policy is None]
    notes += [f"topic {n}: cleanup.policy not checked: the broker did not say" for n in unsaid]
    return found, notes
