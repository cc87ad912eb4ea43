"""Where people would be told: Teams Workflows, Slack, PagerDuty and a signed webhook.

Each receiver checks the documented request shape and refuses what the real service refuses
(``/work/shared/reference/notifications.md`` §7), keeps what it accepted (Slack messages by
channel and ``ts``, PagerDuty alerts by ``dedup_key``, Teams cards, webhook deliveries) and
logs every request with its answer. ``POST /_sim/receivers/outage {"seconds": 30}`` makes
every receiver answer 503 (or ``status``) for that long; ``GET /_sim/receivers`` shows the
log and the state.

==============================  ===========================================================
route                           service
==============================  ===========================================================
POST /receivers/teams/{flow}    Workflows "When a Teams webhook request is received"
POST /receivers/slack/services/ incoming webhook (the last segment is the secret)
     {team}/{bot}/{secret}
POST /receivers/slack/api/      Web API ``chat.postMessage`` / ``chat.update`` (bot token)
     {method}
POST /receivers/pagerduty/v2/   Events API v2
     enqueue
POST /receivers/webhook/{name}  a receiver of our signed webhooks (Standard Webhooks)
==============================  ===========================================================
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from streams.policy.signing import verify_webhook

TEAMS_SIG = "sim-teams-sig"
SLACK_HOOK_SECRET = "sim-slack-hook"
SLACK_BOT_TOKEN = "xoxb-sim-bot-token"
SLACK_CHANNELS = frozenset({"C0PIPEMEDIC"})
WEBHOOK_SECRET = "whsec-sim-webhook"

# Simulator-only choices the references leave unconfirmed, in one place to correct once
# measured against the real services.
UNCONFIRMED: Mapping[str, Any] = {
    "teams_bad_sig_status": 401,
    "teams_non_json_status": 400,
    "teams_per_second": 4,  # more requests per flow within one second -> 429
    "teams_flag_bytes": 20 * 1024,  # cards above this may not render
    "slack_webhook_burst": 10,  # then 1 per second
    "slack_invalid_blocks_status": 400,
    "pagerduty_per_minute": 120,  # per routing key
    "pagerduty_retry_after_s": 60,
}
TEAMS_MAX_BYTES = 28 * 1024
PD_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
PD_ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})


@dataclass(frozen=True)
class Received:
    service: str
    path: str
    status: int
    body: Any
    at: float
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outage:
    until: float = 0.0
    status: int = 503


@dataclass
class ReceiverState:
    teams_cards: list[dict[str, Any]] = field(default_factory=list)
    slack_messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    slack_hook_posts: list[dict[str, Any]] = field(default_factory=list)
    pagerduty: dict[str, dict[str, Any]] = field(default_factory=dict)  # dedup key -> alert
    webhooks: list[dict[str, Any]] = field(default_factory=list)


class Refused(Exception):
    def __init__(self, status: int, body: Any, *, headers: Mapping[str, str] | None = None):
        super().__init__(str(body))
        self.status, self.body, self.headers = status, body, dict(headers or {})


class Receivers:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.state = ReceiverState()
            self.log: list[Received] = []
            self.outage = Outage()
            self._recent: dict[str, deque[float]] = {}
            self._ts = 0

    # --- what tests read -------------------------------------------------------------

    def received(self, service: str | None = None, status: int | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.log
                if (service is None or r.service == service)
                and (status is None or r.status == status)
            ]

    def pagerduty_events(self, action: str | None = None) -> list[dict[str, Any]]:
        return [
            r.body
            for r in self.received("pagerduty", 202)
            if action is None or r.body.get("event_action") == action
        ]

    # --- HTTP --------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/receivers/teams/{flow}", self._serve("teams", self._teams)),
            web.post(
                "/receivers/slack/services/{team}/{bot}/{secret}",
                self._serve("slack_webhook", self._slack_webhook),
            ),
            web.post("/receivers/slack/api/{method}", self._serve("slack_api", self._slack_api)),
            web.post("/receivers/pagerduty/v2/enqueue", self._serve("pagerduty", self._pagerduty)),
            web.post("/receivers/webhook/{name}", self._serve("webhook", self._webhook)),
            web.get("/_sim/receivers", self._show),
            web.post("/_sim/receivers/outage", self._set_outage),
        ]

    def _serve(self, service: str, handle: Callable[[web.Request, bytes], Any]) -> Any:
        async def serve(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            now = self.clock()
            try:
                if now < self.outage.until:
                    raise Refused(self.outage.status, "simulated outage")
                with self._lock:
                    status, answer, note = handle(request, raw)
            except Refused as refused:
                status, answer, note = refused.status, refused.body, "refused"
                headers = refused.headers
            else:
                headers = {}
            with self._lock:
                self.log.append(Received(service, request.path, status, _parsed(raw), now, note))
            if isinstance(answer, dict):
                return web.json_response(answer, status=status, headers=headers)
            return web.Response(status=status, text=answer or "", headers=headers)

        return serve

    async def _show(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(
                {"log": [r.as_json() for r in self.log], "state": asdict(self.state)}
            )

    async def _set_outage(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.set_outage(float(body.get("seconds", 30)), int(body.get("status", 503)))
        return web.json_response({"until": self.outage.until})

    def set_outage(self, seconds: float, status: int = 503) -> None:
        with self._lock:
            self.outage = Outage(self.clock() + seconds, status)

    # --- services ----------------------------------------------------------------------

    def _teams(self, request: web.Request, raw: bytes) -> tuple[int, Any, str]:
        if request.query.get("sig") != TEAMS_SIG:
            raise Refused(UNCONFIRMED["teams_bad_sig_status"], {"error": "invalid signature"})
        body = _json(raw)
        if body is None:
            raise Refused(UNCONFIRMED["teams_non_json_status"], {"error": "not JSON"})
        self._rate("teams:" + request.match_info["flow"], UNCONFIRMED["teams_per_second"], 1.0)
        problems = teams_problems(body, len(raw))
        self.state.teams_cards.append({"card": body, "renders": not problems})
        return 202, "", "; ".join(problems)  # render failures never change the answer

    def _slack_webhook(self, request: web.Request, raw: bytes) -> tuple[int, Any, str]:
        secret = request.match_info["secret"]
        if secret == "archived":
            raise Refused(410, "channel_is_archived")
        if secret != SLACK_HOOK_SECRET:
            raise Refused(404, "channel_not_found")
        body = _json(raw)
        if not isinstance(body, dict):
            raise Refused(400, "invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            raise Refused(400, "no_text")
        if blocks_problem(body.get("blocks")):
            raise Refused(UNCONFIRMED["slack_invalid_blocks_status"], "invalid_blocks")
        burst = UNCONFIRMED["slack_webhook_burst"]
        self._rate("slack_webhook:" + secret, burst, float(burst))
        self.state.slack_hook_posts.append(body)
        return 200, "ok", ""

    def _slack_api(self, request: web.Request, raw: bytes) -> tuple[int, Any, str]:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return 200, {"ok": False, "error": "not_authed"}, ""
        if auth != f"Bearer {SLACK_BOT_TOKEN}":
            return 200, {"ok": False, "error": "invalid_auth"}, ""
        body = _json(raw)
        if not isinstance(body, dict):
            return 200, {"ok": False, "error": "invalid_json"}, ""
        method = request.match_info["method"]
        channel = body.get("channel", "")
        if channel not in SLACK_CHANNELS:
            return 200, {"ok": False, "error": "channel_not_found"}, ""
        if not body.get("text") and not body.get("blocks"):
            return 200, {"ok": False, "error": "no_text"}, ""
        if blocks_problem(body.get("blocks")):
            return 200, {"ok": False, "error": "invalid_blocks"}, ""
        messages = self.state.slack_messages.setdefault(channel, {})
        if method == "chat.postMessage":
            self._ts += 1
            ts = f"{int(self.clock())}.{self._ts:06d}"
            messages[ts] = {"text": body.get("text"), "blocks": body.get("blocks"), "edits": 0}
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": messages[ts]}, ""
        if method == "chat.update":
            ts = str(body.get("ts", ""))
            if ts not in messages:
                return 200, {"ok": False, "error": "message_not_found"}, ""
            edits = messages[ts]["edits"] + 1
            messages[ts] = {"text": body.get("text"), "blocks": body.get("blocks"), "edits": edits}
            return 200, {"ok": True, "channel": channel, "ts": ts, "text": body.get("text")}, ""
        return 200, {"ok": False, "error": "unknown_method"}, ""

    def _pagerduty(self, request: web.Request, raw: bytes) -> tuple[int, Any, str]:
        event = _json(raw)
        if not isinstance(event, dict):
            raise _pd_refusal("Unrecognized object", ["JSON parse error"])
        errors = pagerduty_problems(event)
        if errors:
            raise _pd_refusal("invalid event", errors)
        per_minute = UNCONFIRMED["pagerduty_per_minute"]
        self._rate("pagerduty:" + event["routing_key"], per_minute, 60.0, retry_after=True)
        action, key = event["event_action"], event.get("dedup_key") or f"sim-{len(self.log)}"
        alert = self.state.pagerduty.get(key)
        note = ""
        if action == "trigger":
            if alert is None:
                alert = self.state.pagerduty[key] = {"status": "", "triggers": 0, "incidents": 0}
            if alert["status"] in ("", "resolved"):  # a trigger after a resolve: a new one
                alert["incidents"] += 1
                alert["status"] = "triggered"
            alert["triggers"] += 1
            alert["summary"] = event["payload"]["summary"]
        elif alert is None or alert["status"] == "resolved":
            note = "dropped: no open alert for the key"  # still 202 (unconfirmed)
        else:
            alert["status"] = "resolved" if action == "resolve" else "acknowledged"
        answer = {"status": "success", "message": "Event processed", "dedup_key": key}
        return 202, answer, note

    def _webhook(self, request: web.Request, raw: bytes) -> tuple[int, Any, str]:
        problem = verify_webhook(
            WEBHOOK_SECRET.encode(), dict(request.headers), raw, now_s=self.clock()
        )
        if problem is not None:
            raise Refused(401, {"error": problem})
        seen = {d["id"] for d in self.state.webhooks}
        message_id = request.headers["webhook-id"]
        if message_id not in seen:
            self.state.webhooks.append({"id": message_id, "body": _json(raw)})
        return 204, "", "" if message_id not in seen else "duplicate id"

    def _rate(self, key: str, limit: int, window_s: float, *, retry_after: bool = False) -> None:
        now = self.clock()
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - window_s:
            recent.popleft()
        if len(recent) >= limit:
            wait = str(UNCONFIRMED["pagerduty_retry_after_s"]) if retry_after else "1"
            raise Refused(429, "rate limited", headers={"Retry-After": wait})
        recent.append(now)


def teams_problems(body: Any, size: int) -> list[str]:
    """Why a Workflows post would not render (the answer is 202 all the same)."""
    problems = []
    if size > TEAMS_MAX_BYTES:
        problems.append(f"body {size} bytes > 28 KB")
    elif size > UNCONFIRMED["teams_flag_bytes"]:
        problems.append(f"body {size} bytes > ~20 KB (may not render)")
    if not isinstance(body, dict) or body.get("type") != "message":
        return [*problems, "envelope type is not 'message'"]
    attachments = body.get("attachments") or []
    if not attachments or attachments[0].get("contentType") != (
        "application/vnd.microsoft.card.adaptive"
    ):
        return [*problems, "attachments[0] is not an Adaptive Card"]
    card = attachments[0].get("content") or {}
    version = str(card.get("version", ""))
    if card.get("type") != "AdaptiveCard" or _version(version) > (1, 4):
        problems.append(
            f"card type/version {card.get('type')} {version} (Workflows renders <= 1.4)"
        )
    if any(a.get("type") == "Action.Submit" for a in card.get("actions") or []):
        problems.append("Action.Submit is not supported in webhook cards")
    return problems


def blocks_problem(blocks: Any) -> bool:
    if blocks is None:
        return False
    if not isinstance(blocks, list) or len(blocks) > 50:
        return True
    for block in blocks:
        text = (block.get("text") or {}).get("text", "") if isinstance(block, dict) else ""
        if block.get("type") == "section" and len(text) > 3000:
            return True
    return False


def pagerduty_problems(event: Mapping[str, Any]) -> list[str]:
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be a 32 character integration key")
    action = event.get("event_action")
    if action not in PD_ACTIONS:
        errors.append("'event_action' must be one of trigger, acknowledge, resolve")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"'dedup_key' is required for {action}")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is required for trigger"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary:
            errors.append("'payload.summary' is required")
        elif len(summary) > 1024:
            errors.append("'payload.summary' must be at most 1024 characters")
        if not payload.get("source"):
            errors.append("'payload.source' is required")
        if payload.get("severity") not in PD_SEVERITIES:
            errors.append("'payload.severity' must be one of critical, error, warning, info")
        for link in event.get("links") or []:
            if not isinstance(link, dict) or not link.get("href"):
                errors.append("each of 'links' needs 'href'")
    return errors


def _pd_refusal(status: str, errors: list[str]) -> Refused:
    return Refused(400, {"status": status, "message": "Event object is invalid", "errors": errors})


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (99,)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _parsed(raw: bytes) -> Any:
    body = _json(raw)
    if isinstance(body, dict) and "routing_key" in body:
        body = {**body, "routing_key": "***"}
    return body if body is not None else raw[:200].decode("utf-8", "replace")
