"""The topic plan: every physical topic with partitions, cleanup policy, retention and copies.

Decided here, from the topic names a worker uses (``pipemedic.worker.planned_topics``):

* **Cleanup policy by kind.** A topic whose latest record per key *is* the state is
  compacted, never deleted after retention: Faust's table changelogs (dedup, chains,
  notices; on a deleting topic a restarted worker would recover an empty table once
  retention passed) and ``control`` (a pause must outlive any retention). Every other topic
  deletes after its retention: stream topics after ``topic_retention_hours``, dead letters
  after ``dead_letter_retention_hours`` (longer: people redrive them after fixing a cause).
* **Existing topics are checked, never silently accepted.** :func:`differences` names what
  differs between a topic on the broker and its plan: partitions (a changelog must have its
  table's partition count, and keys move between partitions when a count changes), cleanup
  policy, fewer copies than planned.
* **What an Event Hubs tier allows** (``platforms.md``, Event Hubs tier limits):
  :func:`event_hubs_warnings` says when the plan needs more event hubs than a namespace of the
  tier holds, compaction the tier lacks, or more retention or partitions than it allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streams.policy.routing import CONTROL, DEAD_LETTER

CHANGELOG = "changelog"
CONTROL_KIND = "control"
DEAD_LETTER_KIND = "dead_letter"
STREAM = "stream"

COMPACT = "compact"
DELETE = "delete"
# what a Kafka broker does with a topic created without a cleanup.policy
BROKER_DEFAULT_POLICY = DELETE


def kind_of(name: str) -> str:
    """The kind of a topic, whatever its prefix (``shadow-control`` is the control topic)."""
    if name.endswith("-changelog"):
        return CHANGELOG
    if name.endswith(CONTROL):
        return CONTROL_KIND
    if name.endswith(DEAD_LETTER):
        return DEAD_LETTER_KIND
    return STREAM


def cleanup_policy_of(name: str) -> str:
    return COMPACT if kind_of(name) in (CHANGELOG, CONTROL_KIND) else DELETE


@dataclass(frozen=True)
class TopicSpec:
    name: str
    kind: str
    partitions: int
    cleanup_policy: str  # compact | delete
    retention_hours: int | None  # None: compacted, kept until a newer record per key
    replication_factor: int

    def kafka_configs(self) -> dict[str, str]:
        """Topic configs for Kafka's CreateTopics (and ``kafka-topics.sh --config``)."""
        configs = {"cleanup.policy": self.cleanup_policy}
        if self.retention_hours is not None:
            configs["retention.ms"] = str(self.retention_hours * 3_600_000)
        return configs

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "partitions": self.partitions,
            "cleanup_policy": self.cleanup_policy,
            "retention_hours": self.retention_hours,
            "replication_factor": self.replication_factor,
        }


def plan_topics(
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    retention_hours: int,
    dead_letter_retention_hours: int,
) -> tuple[TopicSpec, ...]:
    """One spec per distinct name, in the order given."""
    specs = []
    for name in dict.fromkeys(names):
        kind = kind_of(name)
        policy = cleanup_policy_of(name)
        hours = dead_letter_retention_hours if kind == DEAD_LETTER_KIND else retention_hours
        specs.append(
            TopicSpec(
                name=name,
                kind=kind,
                partitions=partitions,
                cleanup_policy=policy,
                retention_hours=None if policy == COMPACT else hours,
                replication_factor=replication_factor,
            )
        )
    return tuple(specs)


@dataclass(frozen=True)
class Observed:
    """A topic as the broker describes it. ``cleanup_policy`` None: the broker did not say
    (it does not answer DescribeConfigs); "" : no value set, the broker's default applies."""

    name: str
    partitions: int
    replication_factor: int
    cleanup_policy: str | None = None


def _policies(value: str) -> frozenset[str]:
    return frozenset(p.strip() for p in value.split(",") if p.strip())


def differences(spec: TopicSpec, seen: Observed) -> tuple[str, ...]:
    """One line per way ``seen`` differs from ``spec`` (nothing: as planned)."""
    found = []
    if seen.partitions != spec.partitions:
        found.append(
            f"topic {spec.name}: {seen.partitions} partitions, the plan says {spec.partitions}"
        )
    if seen.cleanup_policy is not None:
        have = seen.cleanup_policy or BROKER_DEFAULT_POLICY
        if _policies(have) != {spec.cleanup_policy}:
            why = (
                " (its records would be deleted after retention: a changelog or control topic"
                " must be compacted)"
                if spec.cleanup_policy == COMPACT
                else ""
            )
            shown = have if seen.cleanup_policy else f"{have} (the broker's default)"
            found.append(
                f"topic {spec.name}: cleanup.policy={shown}, the plan says "
                f"{spec.cleanup_policy}{why}"
            )
    if seen.replication_factor < spec.replication_factor:
        found.append(
            f"topic {spec.name}: replication factor {seen.replication_factor}, the plan says "
            f"{spec.replication_factor}"
        )
    return tuple(found)


@dataclass(frozen=True)
class EventHubsTier:
    name: str
    kafka: bool
    max_event_hubs: int  # per namespace (Premium: per processing unit; Dedicated: per CU)
    compaction: bool
    max_retention_hours: int
    max_partitions: int


# platforms.md, "Tier limits" (event-hubs-tier-limits.md): one row per tier
EVENT_HUBS_TIERS: tuple[EventHubsTier, ...] = (
    EventHubsTier("basic", False, 10, False, 24, 32),
    EventHubsTier("standard", True, 10, True, 7 * 24, 32),
    EventHubsTier("premium", True, 100, True, 90 * 24, 100),
    EventHubsTier("dedicated", True, 1000, True, 90 * 24, 1024),
)
COMPACTION_NOTE = (
    "log compaction (changelogs, control) exists on Event Hubs Standard (1 GB per partition), "
    "Premium and Dedicated (250 GB per partition); Basic has neither compaction nor a Kafka "
    "endpoint"
)


def tier_named(name: str) -> EventHubsTier:
    for tier in EVENT_HUBS_TIERS:
        if tier.name == name:
            return tier
    raise ValueError(f"unknown Event Hubs tier {name!r}")


def retention_on(spec: TopicSpec, tier: EventHubsTier) -> int | None:
    """The retention an event hub of ``tier`` can have for ``spec`` (at most the tier's)."""
    if spec.retention_hours is None:
        return None
    return min(spec.retention_hours, tier.max_retention_hours)


def event_hubs_warnings(specs: Sequence[TopicSpec], tier: EventHubsTier) -> tuple[str, ...]:
    """What keeps ``specs`` from fitting one namespace of ``tier``, one line each."""
    found = []
    label = tier.name.capitalize()
    if not tier.kafka:
        found.append(f"Event Hubs {label} has no Kafka endpoint: use Standard or above")
    per = {"premium": " per processing unit", "dedicated": " per capacity unit"}.get(tier.name, "")
    if len(specs) > tier.max_event_hubs:
        found.append(
            f"{len(specs)} event hubs needed, Event Hubs {label} allows "
            f"{tier.max_event_hubs}{per} in a namespace: use a larger tier, or fewer topics"
        )
    compacted = [s.name for s in specs if s.cleanup_policy == COMPACT]
    if compacted and not tier.compaction:
        found.append(f"Event Hubs {label} cannot compact: {', '.join(compacted)}")
    for spec in specs:
        if spec.retention_hours is not None and spec.retention_hours > tier.max_retention_hours:
            found.append(
                f"{spec.name}: retention {spec.retention_hours} h is more than {label} allows "
                f"({tier.max_retention_hours} h): {tier.max_retention_hours} h here"
            )
        if spec.partitions > tier.max_partitions:
            found.append(
                f"{spec.name}: {spec.partitions} partitions, {label} allows "
                f"{tier.max_partitions} per event hub"
            )
    return tuple(found)
