"""Where a record goes next: one topic per action, one per delay tier, one for dead letters.

Topic names are derived here and nowhere else, so the worker, the topic pre-creation and the
tests agree on them. A topic prefix (``PIPEMEDIC_TOPIC_PREFIX``) names a second pipeline on the
same cluster: every topic and the consumer group (the Faust app id, hence its changelogs) carry
it, so a shadow pipeline in observe mode reads and writes nothing of production's.
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


def all_topics(tiers: Sequence[int], prefix: str = "") -> tuple[str, ...]:
    """Every topic the topology uses (Faust's own changelog topics come on top)."""
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
    return tuple(prefixed(name, prefix) for name in names)


def route(
    request: ActionRequest, *, now_ms: int, tiers: Sequence[int]
) -> tuple[str, ActionRequest]:
    """Send a request to its action topic when due, else to the delay tier that fits the wait."""
    hop = backoff.plan_hop(tiers, now_ms, request.due_at)
    if hop is None:
        return action_topic(request.action), replace(request, tier="", hop_due_at=0)
    tier = backoff.tier_name(hop.tier_s)
    return backoff.tier_topic(hop.tier_s), replace(request, tier=tier, hop_due_at=hop.hop_due_at)
