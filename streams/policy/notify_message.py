"""What a person reads about a chain, and its shape per channel within each documented limit.

:func:`compose` gathers what someone needs to act without opening five tabs: source,
factory or workspace, pipeline or job, run ids with portal links (the ADF monitoring URL of
the run; Databricks' own ``run_page_url``, passed through, never built), the error type, a
trimmed error message, what pipemedic did (attempts, history) and why it stopped, and the
approval links when a decision is pending. The renderers below turn it into each channel's
body and trim it to that channel's limits (``/work/shared/reference/notifications.md``):

=================  ==========================================================================
Teams Workflows    Adaptive Card 1.4 in a ``message`` envelope; ``Action.OpenUrl`` only;
                   whole body kept under 20 KB (the documented cap is 28 KB, ~21 KB measured)
Slack              ``text`` <= 4,000 (fallback), section text <= 3,000, <= 50 blocks
PagerDuty          ``summary`` <= 1,024, ``dedup_key`` <= 255 (the chain id), severity from risk
webhook            the message as JSON, signed by :mod:`streams.policy.signing`
=================  ==========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from streams.policy.model import ActionRequest
from streams.policy.notices import Transition

TEAMS_MAX_BYTES = 20 * 1024
SLACK_TEXT_MAX = 4000
SLACK_SECTION_MAX = 3000
SLACK_BLOCKS_MAX = 50
PAGERDUTY_SUMMARY_MAX = 1024
PAGERDUTY_DEDUP_MAX = 255
MESSAGE_MAX = 500  # the platform's error message, as quoted
HISTORY_SHOWN = 8  # the chain's last steps in a message

SEVERITY_BY_RISK: Mapping[str, str] = {"high": "critical", "medium": "error", "low": "warning"}

_HEADLINE: Mapping[str, str] = {
    Transition.HANDED_TO_PEOPLE: "needs a person",
    Transition.AWAITING_APPROVAL: "awaits approval",
    Transition.APPROVAL_EXPIRED: "approval expired: needs a person",
    Transition.RESOLVED: "resolved",
    Transition.STORM: "and more: a storm, actions held",
}


@dataclass(frozen=True)
class Message:
    chain_id: str
    transition: str
    title: str  # one line
    severity: str  # critical | error | warning | info (PagerDuty's words)
    reason: str  # why pipemedic stopped, or what it waits for
    facts: tuple[tuple[str, str], ...]
    links: tuple[tuple[str, str], ...]  # (text, url)
    history: tuple[str, ...]
    source: str  # the affected system, for PagerDuty's ``payload.source``

    @property
    def summary(self) -> str:
        return f"{self.title}: {self.reason}" if self.reason else self.title


def adf_run_url(run_id: str, factory_id: str) -> str:
    """The ADF monitoring page of one pipeline run (``factory_id``: the factory's ARM id)."""
    return (
        f"https://adf.azure.com/en-us/monitoring/pipelineruns/{quote(run_id)}?factory={factory_id}"
    )


def compose(
    request: ActionRequest,
    *,
    factory_ids: Mapping[str, str] | None = None,
    approval_links: Mapping[str, str] | None = None,
) -> Message:
    """``factory_ids``: factory name -> ARM resource id (for the ADF run link);
    ``approval_links``: decision -> signed URL, when the chain waits for one."""
    alert, kind = request.alert, request.classification
    transition = request.step
    what = alert.pipeline or alert.job_id or alert.cluster_id or alert.kind
    where = f"{alert.source} {alert.scope}".strip()
    title = f"{where}: {what} {_HEADLINE.get(transition, transition)}"
    facts = [
        ("Source", alert.source),
        ("Factory" if alert.source == "adf" else "Workspace", alert.scope),
        ("Pipeline" if alert.source == "adf" else "Job", alert.pipeline or alert.job_id),
        ("Run", alert.run_id),
        ("Activity/task", alert.sub_id),
        ("Cluster", alert.cluster_id),
        ("Error type", kind.error_type),
        ("Error code", alert.error_code),
        ("Risk", kind.risk),
        ("Attempts", f"{request.attempt} of {request.max_attempts}" if request.attempt else ""),
        ("Error", _trim(alert.message, MESSAGE_MAX)),
        ("Chain", request.chain_id),
    ]
    links = []
    factory_id = (factory_ids or {}).get(alert.scope.lower())
    if alert.source == "adf" and alert.run_id and factory_id:
        links.append(("Open run in ADF", adf_run_url(alert.run_id, factory_id)))
    if page := alert.details.get("run_page_url"):
        links.append(("Open run in Databricks", page))
    for decision, url in (approval_links or {}).items():
        links.append((f"{decision.capitalize()}…", url))
    return Message(
        chain_id=request.chain_id,
        transition=transition,
        title=title,
        severity="info"
        if transition == Transition.RESOLVED
        else SEVERITY_BY_RISK.get(kind.risk, "error"),
        reason=request.reason,
        facts=tuple((k, v) for k, v in facts if v),
        links=tuple(links),
        history=tuple(request.history[-HISTORY_SHOWN:]),
        source=alert.scope or alert.source or "pipemedic",
    )


# --- Teams Workflows --------------------------------------------------------------------


def teams_card(message: Message) -> dict[str, Any]:
    """The Workflows envelope with one Adaptive Card 1.4; facts and history are dropped
    from the end until the body fits :data:`TEAMS_MAX_BYTES`."""
    facts, history = list(message.facts), list(message.history)
    while True:
        body = _teams_envelope(message, facts, history)
        if len(json.dumps(body).encode()) <= TEAMS_MAX_BYTES or not (facts or history):
            return body
        if history:
            history.pop(0)
        else:
            facts.pop()


def _teams_envelope(message: Message, facts: list, history: list) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": message.title, "wrap": True, "weight": "Bolder"},
    ]
    if message.reason:
        items.append({"type": "TextBlock", "text": _trim(message.reason, 2000), "wrap": True})
    items.append(
        {"type": "FactSet", "facts": [{"title": k, "value": _trim(v, 1000)} for k, v in facts]}
    )
    if history:
        items.append(
            {"type": "TextBlock", "text": "\n\n".join(history), "wrap": True, "isSubtle": True}
        )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": items,
        "actions": [{"type": "Action.OpenUrl", "title": t, "url": u} for t, u in message.links],
        "msteams": {"width": "Full"},
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


# --- Slack --------------------------------------------------------------------------------


def slack_message(message: Message) -> dict[str, Any]:
    """``text`` (the notification fallback) and Block Kit ``blocks``, within Slack's limits."""
    facts = "\n".join(f"*{k}:* {v}" for k, v in message.facts)
    blocks: list[dict[str, Any]] = [
        _section(f"*{_escape(message.title)}*"),
    ]
    if message.reason:
        blocks.append(_section(_escape(message.reason)))
    blocks.append(_section(_escape(facts)))
    if message.history:
        blocks.append(_section("```" + "\n".join(message.history) + "```"))
    if message.links:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": t[:75]}, "url": u}
                    for t, u in message.links[:25]
                ],
            }
        )
    return {"text": _trim(message.summary, SLACK_TEXT_MAX), "blocks": blocks[:SLACK_BLOCKS_MAX]}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _trim(text, SLACK_SECTION_MAX)}}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- PagerDuty Events API v2 -----------------------------------------------------------


def pagerduty_dedup_key(chain_id: str) -> str:
    return chain_id[:PAGERDUTY_DEDUP_MAX]


def pagerduty_event(message: Message, routing_key: str) -> dict[str, Any]:
    """``trigger`` for a chain that needs people; ``resolve`` (same key) once it is fixed."""
    key = pagerduty_dedup_key(message.chain_id)
    if message.transition == Transition.RESOLVED:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": _trim(message.summary, PAGERDUTY_SUMMARY_MAX),
            "source": message.source[:255],
            "severity": message.severity,
            "component": dict(message.facts).get("Pipeline") or dict(message.facts).get("Job", ""),
            "class": dict(message.facts).get("Error type", ""),
            "custom_details": {
                **dict(message.facts),
                "reason": message.reason,
                "history": list(message.history),
            },
        },
        "links": [{"href": u, "text": t} for t, u in message.links],
        "client": "pipemedic",
    }


# --- generic webhook ---------------------------------------------------------------------


def webhook_body(message: Message) -> dict[str, Any]:
    return {
        "chain_id": message.chain_id,
        "transition": message.transition,
        "title": message.title,
        "severity": message.severity,
        "reason": message.reason,
        "facts": dict(message.facts),
        "links": [{"text": t, "url": u} for t, u in message.links],
        "history": list(message.history),
    }


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
