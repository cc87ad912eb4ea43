"""Where a record goes next: one topic per action, one per delay tier, one for dead letters.

Topic names are derived here and nowhere else, so the worker, the topic pre-creation and the
tests agree on them.

**Topic profiles.** The default profile gives every logical topic a physical topic of its own
(29 with the demo's tiers). The compact profile fits an Event Hubs Standard namespace (10 event
hubs, changelogs included): the internal stages (enrich, classified alerts, chain events,
admission) share one topic, every action shares another, every delay tier a third, and all
tables share one changelog. On a shared topic each record carries its logical topic in the
``pipemedic-lane`` header, and each stage passes over the records of other lanes
(:func:`physical_topic`, :func:`lane_of`).

A topic prefix (``PIPEMEDIC_TOPIC_PREFIX``) names a second pipeline on the same cluster: every
topic and the consumer group (the Faust app id, hence its changelogs) carry it, so a shadow
pipeline in observe mode reads and writes nothing of production's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from streams.policy import backoff
from streams.policy.model import Action, ActionRequest

RAW = "alerts-raw"
ENRICH = "alerts-enrich"
CLASSIFIED = "alerts-classified"
CHAIN_EVENTS = "chain-events"
OUTCOMES = "outcomes"
DEAD_LETTER = "dead-letter"
# people are told on a topic of their own, so a slow or failing channel never delays
# remediation; a notification travels as an ActionRequest of this action (retries included)
NOTIFICATIONS = "notifications"
NOTIFY = "notify"
# the kill switch: pause/resume records keyed by scope, read whole by every worker
CONTROL = "control"
# new actions pass here once (caps, budget, storms: streams/policy/admission.py)
ADMISSION = "admission"


DEFAULT_PROFILE = "default"
COMPACT_PROFILE = "compact"
PROFILES = (DEFAULT_PROFILE, COMPACT_PROFILE)
# the compact profile's shared topics
STAGES = "stages"
ACTIONS = "actions"
DELAYS = "delays"
# the header naming a record's logical topic on a shared topic
LANE_HEADER = "pipemedic-lane"
_STAGE_LANES = (ENRICH, CLASSIFIED, CHAIN_EVENTS, ADMISSION)


def physical_topic(name: str, profile: str = DEFAULT_PROFILE) -> str:
    """The topic logical topic ``name`` (unprefixed) travels on in ``profile``."""
    if profile != COMPACT_PROFILE:
        return name
    if name in _STAGE_LANES:
        return STAGES
    if name.startswith("action-"):
        return ACTIONS
    if name.startswith("delay-"):
        return DELAYS  # one reader: the delay stage releases each record at its own time
    return name


def lane_of(name: str, profile: str = DEFAULT_PROFILE) -> str | None:
    """The ``pipemedic-lane`` header value of logical topic ``name`` in ``profile``; None
    when ``name`` has a topic of its own there (or its topic has one reader: the tiers)."""
    if physical_topic(name, profile) in (STAGES, ACTIONS):
        return name
    return None


def first_lane(name: str, profile: str = DEFAULT_PROFILE) -> str:
    """The first lane of the topic ``name`` travels on: it takes that topic's records that
    name no lane (and dead-letters what it cannot decode)."""
    if physical_topic(name, profile) == STAGES:
        return _STAGE_LANES[0]
    if physical_topic(name, profile) == ACTIONS:
        return action_topic(Action.MANUAL.value)
    return name


def destination(
    name: str, profile: str = DEFAULT_PROFILE, prefix: str = ""
) -> tuple[str, list[tuple[str, bytes]] | None]:
    """Where a record of logical topic ``name`` is sent from outside the worker (the CLI, a
    test): its physical topic and the headers naming its lane, if it needs one."""
    lane = lane_of(name, profile)
    headers = None if lane is None else [(LANE_HEADER, lane.encode())]
    return prefixed(physical_topic(name, profile), prefix), headers


def prefixed(name: str, prefix: str = "") -> str:
    """``name`` as the pipeline named by ``prefix`` calls it ("" is the unprefixed one)."""
    return f"{prefix}{name}"


def group_id(app_id: str, prefix: str = "") -> str:
    """The Faust app id: the consumer group and the stem of the table changelog topics."""
    return f"{prefix}{app_id}"


def action_topic(action: str) -> str:
    if action == NOTIFY:
        return NOTIFICATIONS
    return f"action-{action.replace('_', '-')}"


def all_action_topics() -> tuple[str, ...]:
    return tuple(action_topic(a.value) for a in Action)


def all_topics(
    tiers: Sequence[int], prefix: str = "", profile: str = DEFAULT_PROFILE
) -> tuple[str, ...]:
    """Every physical topic the topology uses (Faust's own changelog topics come on top)."""
    names = (
        RAW,
        ENRICH,
        CLASSIFIED,
        CHAIN_EVENTS,
        OUTCOMES,
        DEAD_LETTER,
        NOTIFICATIONS,
        CONTROL,
        ADMISSION,
        *all_action_topics(),
        *(backoff.tier_topic(t) for t in tiers),
    )
    physical = dict.fromkeys(physical_topic(name, profile) for name in names)
    return tuple(prefixed(name, prefix) for name in physical)


def route(
    request: ActionRequest, *, now_ms: int, tiers: Sequence[int]
) -> tuple[str, ActionRequest]:
    """Send a request to its action topic when due, else to the delay tier that fits the wait."""
    hop = backoff.plan_hop(tiers, now_ms, request.due_at)
    if hop is None:
        return action_topic(request.action), replace(request, tier="", hop_due_at=0)
    tier = backoff.tier_name(hop.tier_s)
    return backoff.tier_topic(hop.tier_s), replace(request, tier=tier, hop_due_at=hop.hop_due_at)
