"""Channel adapters over httpx.MockTransport: what each sends, and how answers map to the
retry policy's kinds."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.pagerduty import PagerDutyClient, PagerDutyConfig
from streams.adapters.signed_webhook import SignedWebhookClient, WebhookConfig
from streams.adapters.slack import SlackClient, SlackConfig
from streams.adapters.teams import TeamsClient, TeamsConfig
from streams.policy.notify_message import Message
from streams.policy.signing import verify_webhook

MESSAGE = Message(
    chain_id="c1",
    transition="handed_to_people",
    title="adf f1: p needs a person",
    severity="error",
    reason="3 attempts exhausted",
    facts=(("Run", "r1"),),
    links=(("Open run in ADF", "https://adf.azure.com/x"),),
    history=(),
    source="f1",
)
RESOLVED = Message(**{**MESSAGE.__dict__, "transition": "resolved"})


def recording(answer):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return seen, httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_teams_posts_the_card_and_keeps_the_url_out_of_errors():
    seen, http = recording(lambda r: httpx.Response(202))
    url = "https://flow.example/workflows/1/triggers/manual/paths/invoke?sig=SECRET"
    teams = TeamsClient("ops", TeamsConfig(SecretStr(url)), http)
    assert await teams.deliver(MESSAGE, {}) == {}
    assert json.loads(seen[0].content)["attachments"][0]["content"]["version"] == "1.4"
    _, failing = recording(lambda r: httpx.Response(503))
    with pytest.raises(PlatformError) as caught:
        await TeamsClient("ops", TeamsConfig(SecretStr(url)), failing).deliver(MESSAGE, {})
    assert caught.value.kind is ErrorKind.TRANSIENT and "SECRET" not in str(caught.value)


async def test_pagerduty_triggers_then_resolves_with_the_chain_id():
    seen, http = recording(lambda r: httpx.Response(202, json={"status": "success"}))
    pd = PagerDutyClient("oncall", PagerDutyConfig(SecretStr("k" * 32), "https://pd/x"), http)
    assert await pd.deliver(MESSAGE, {}) == {"dedup_key": "c1"}
    await pd.deliver(RESOLVED, {"dedup_key": "c1"})
    sent = [json.loads(r.content) for r in seen]
    assert [(e["event_action"], e["dedup_key"]) for e in sent] == [
        ("trigger", "c1"),
        ("resolve", "c1"),
    ]


@pytest.mark.parametrize(
    ("status", "headers", "kind", "wait"),
    [
        (429, {"Retry-After": "7"}, ErrorKind.THROTTLED, 7.0),
        (500, {}, ErrorKind.TRANSIENT, None),
        (400, {}, ErrorKind.BAD_REQUEST, None),
    ],
)
async def test_pagerduty_answers_become_kinds(status, headers, kind, wait):
    _, http = recording(lambda r: httpx.Response(status, headers=headers, json={}))
    pd = PagerDutyClient("oncall", PagerDutyConfig(SecretStr("k" * 32), "https://pd/x"), http)
    with pytest.raises(PlatformError) as caught:
        await pd.deliver(MESSAGE, {})
    assert caught.value.kind is kind and caught.value.retry_after_s == wait


async def test_slack_bot_posts_once_then_updates_the_same_ts():
    def answer(request):
        body = json.loads(request.content)
        return httpx.Response(200, json={"ok": True, "channel": body["channel"], "ts": "1.000001"})

    seen, http = recording(answer)
    config = SlackConfig(bot_token=SecretStr("xoxb-1"), channel="C1", api_url="https://slack/api")
    slack = SlackClient("ops", config, http)
    ref = await slack.deliver(MESSAGE, {})
    assert ref == {"channel": "C1", "ts": "1.000001"}
    await slack.deliver(RESOLVED, ref)
    assert [r.url.path for r in seen] == ["/api/chat.postMessage", "/api/chat.update"]
    first, second = (json.loads(r.content) for r in seen)
    assert first["unfurl_links"] is False and second["ts"] == "1.000001"
    assert seen[0].headers["Authorization"] == "Bearer xoxb-1"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("ratelimited", ErrorKind.THROTTLED),
        ("invalid_auth", ErrorKind.AUTH),
        ("channel_not_found", ErrorKind.NOT_FOUND),
        ("invalid_blocks", ErrorKind.BAD_REQUEST),
    ],
)
async def test_slack_api_errors_come_as_200_and_become_kinds(error, kind):
    _, http = recording(lambda r: httpx.Response(200, json={"ok": False, "error": error}))
    config = SlackConfig(bot_token=SecretStr("xoxb-1"), channel="C1", api_url="https://slack/api")
    with pytest.raises(PlatformError) as caught:
        await SlackClient("ops", config, http).deliver(MESSAGE, {})
    assert caught.value.kind is kind


async def test_slack_posts_anew_when_the_message_to_update_is_gone():
    def answer(request):
        if request.url.path.endswith("chat.update"):
            return httpx.Response(200, json={"ok": False, "error": "message_not_found"})
        return httpx.Response(200, json={"ok": True, "channel": "C1", "ts": "2.000002"})

    seen, http = recording(answer)
    config = SlackConfig(bot_token=SecretStr("xoxb-1"), channel="C1", api_url="https://slack/api")
    ref = await SlackClient("ops", config, http).deliver(RESOLVED, {"channel": "C1", "ts": "1.0"})
    assert ref["ts"] == "2.000002" and len(seen) == 2


async def test_slack_webhook_posts_blocks_and_maps_its_plain_text_errors():
    seen, http = recording(lambda r: httpx.Response(200, text="ok"))
    hook = SlackClient("ops", SlackConfig(webhook_url=SecretStr("https://hooks/x")), http)
    assert await hook.deliver(MESSAGE, {}) == {}
    assert json.loads(seen[0].content)["blocks"]
    _, gone = recording(lambda r: httpx.Response(410, text="channel_is_archived"))
    with pytest.raises(PlatformError) as caught:
        await SlackClient("ops", SlackConfig(webhook_url=SecretStr("https://h/x")), gone).deliver(
            MESSAGE, {}
        )
    assert caught.value.kind is ErrorKind.BAD_REQUEST


async def test_the_webhook_is_signed_over_id_timestamp_and_the_exact_body():
    seen, http = recording(lambda r: httpx.Response(204))
    config = WebhookConfig("https://hooks.example/pm", SecretStr("whsec"))
    hook = SignedWebhookClient("audit", config, http, clock=lambda: 1_700_000_000.0)
    await hook.deliver(MESSAGE, {})
    await hook.deliver(MESSAGE, {})
    first, again = seen
    assert verify_webhook(b"whsec", first.headers, first.content, now_s=1_700_000_001) is None
    assert first.headers["webhook-id"] == again.headers["webhook-id"]  # same delivery, same id
    assert json.loads(first.content)["chain_id"] == "c1"
