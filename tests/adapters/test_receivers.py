"""The simulator's receivers, driven by our channel adapters over real HTTP: they accept the
documented shapes, refuse what the real services refuse, and go down on request."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from pipemedic.simulator import SimulatorServer
from pipemedic.simulator import receivers as rx
from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.pagerduty import PagerDutyClient, PagerDutyConfig
from streams.adapters.signed_webhook import SignedWebhookClient, WebhookConfig
from streams.adapters.slack import SlackClient, SlackConfig
from streams.adapters.teams import TeamsClient, TeamsConfig
from streams.policy.notify_message import Message

WORLD = {"azure_ad": {"tenant_id": "t", "client_id": "c", "client_secret": "s"}}
KEY = "0123456789abcdef0123456789abcdef"
MESSAGE = Message(
    chain_id="chain-1",
    transition="handed_to_people",
    title="adf f1: p needs a person",
    severity="critical",
    reason="never automate",
    facts=(("Run", "r1"),),
    links=(("Open run in ADF", "https://adf.azure.com/x"),),
    history=("1: failure",),
    source="f1",
)
RESOLVED = Message(**{**MESSAGE.__dict__, "transition": "resolved"})


@pytest.fixture
async def sim():
    async with SimulatorServer(WORLD) as server, httpx.AsyncClient() as http:
        yield server, http


async def test_pagerduty_one_incident_per_chain_then_resolved(sim):
    server, http = sim
    pd = PagerDutyClient("oncall", PagerDutyConfig(SecretStr(KEY), pd_url(server)), http)
    await pd.deliver(MESSAGE, {})
    await pd.deliver(MESSAGE, {})  # a repeated trigger joins the open alert
    await pd.deliver(RESOLVED, {})
    alert = server.sim.receivers.state.pagerduty["chain-1"]
    assert alert == {**alert, "status": "resolved", "triggers": 2, "incidents": 1}
    assert [e["event_action"] for e in server.sim.receivers.pagerduty_events()] == [
        "trigger",
        "trigger",
        "resolve",
    ]


def pd_url(server) -> str:
    return f"{server.url}/receivers/pagerduty/v2/enqueue"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"routing_key": None}, "routing_key"),
        ({"routing_key": "short"}, "routing_key"),
        ({"event_action": "open"}, "event_action"),
        ({"payload.severity": "fatal"}, "severity"),
        ({"payload.summary": "x" * 1025}, "summary"),
        ({"payload.summary": None}, "summary"),
        ({"payload.source": None}, "source"),
        ({"dedup_key": "k" * 256}, "dedup_key"),
        ({"event_action": "resolve", "dedup_key": None}, "dedup_key"),
    ],
)
async def test_pagerduty_refuses_what_events_v2_refuses(sim, change, error):
    server, http = sim
    event = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "chain-1",
        "payload": {"summary": "s", "source": "f1", "severity": "error"},
    }
    for path, value in change.items():
        place, name = (event["payload"], path[8:]) if path.startswith("payload.") else (event, path)
        if value is None:
            place.pop(name)
        else:
            place[name] = value
    answer = await http.post(pd_url(server), json=event)
    assert answer.status_code == 400
    body = answer.json()
    assert body["status"] and any(error in e for e in body["errors"])
    bad_json = await http.post(pd_url(server), content=b"{nope")
    assert bad_json.status_code == 400 and bad_json.json()["errors"] == ["JSON parse error"]


async def test_pagerduty_resolve_of_an_unknown_key_is_accepted_and_dropped(sim):
    server, http = sim
    pd = PagerDutyClient("oncall", PagerDutyConfig(SecretStr(KEY), pd_url(server)), http)
    await pd.deliver(RESOLVED, {})
    assert server.sim.receivers.state.pagerduty == {}
    assert server.sim.receivers.received("pagerduty")[0].note.startswith("dropped")


async def test_slack_bot_keeps_one_message_per_chain(sim):
    server, http = sim
    config = SlackConfig(
        bot_token=SecretStr(rx.SLACK_BOT_TOKEN),
        channel="C0PIPEMEDIC",
        api_url=f"{server.url}/receivers/slack/api",
    )
    slack = SlackClient("ops", config, http)
    ref = await slack.deliver(MESSAGE, {})
    await slack.deliver(RESOLVED, ref)
    messages = server.sim.receivers.state.slack_messages["C0PIPEMEDIC"]
    assert list(messages) == [ref["ts"]] and messages[ref["ts"]]["edits"] == 1
    wrong = SlackClient("ops", SlackConfig(**{**config.__dict__, "channel": "CNOPE"}), http)
    with pytest.raises(PlatformError) as caught:
        await wrong.deliver(MESSAGE, {})
    assert caught.value.kind is ErrorKind.NOT_FOUND
    bad = SlackClient("ops", SlackConfig(**{**config.__dict__, "bot_token": SecretStr("x")}), http)
    with pytest.raises(PlatformError) as caught:
        await bad.deliver(MESSAGE, {})
    assert caught.value.kind is ErrorKind.AUTH


async def test_slack_webhook_accepts_blocks_and_refuses_like_slack(sim):
    server, http = sim
    base = f"{server.url}/receivers/slack/services/T1/B1"
    hook = SlackClient(
        "ops", SlackConfig(webhook_url=SecretStr(f"{base}/{rx.SLACK_HOOK_SECRET}")), http
    )
    await hook.deliver(MESSAGE, {})
    assert server.sim.receivers.state.slack_hook_posts[0]["blocks"]
    url = f"{base}/{rx.SLACK_HOOK_SECRET}"
    assert (await http.post(url, content=b"nope")).text == "invalid_payload"
    assert (await http.post(url, json={"x": 1})).text == "no_text"
    too_long = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
    assert (await http.post(url, json=too_long)).status_code == 400
    archived = await http.post(f"{base}/archived", json={"text": "t"})
    assert (archived.status_code, archived.text) == (410, "channel_is_archived")


async def test_teams_answers_202_and_records_whether_the_card_renders(sim):
    server, http = sim
    url = f"{server.url}/receivers/teams/flow-1?sig={rx.TEAMS_SIG}"
    await TeamsClient("eng", TeamsConfig(SecretStr(url)), http).deliver(MESSAGE, {})
    card_15 = {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {"type": "AdaptiveCard", "version": "1.5"},
            }
        ],
    }
    assert (await http.post(url, json=card_15)).status_code == 202  # fails later, in the flow
    cards = server.sim.receivers.state.teams_cards
    assert [c["renders"] for c in cards] == [True, False]
    bad = f"{server.url}/receivers/teams/flow-1?sig=forged"
    with pytest.raises(PlatformError) as caught:
        await TeamsClient("eng", TeamsConfig(SecretStr(bad)), http).deliver(MESSAGE, {})
    assert caught.value.kind is ErrorKind.AUTH


async def test_signed_webhook_is_verified_and_a_forgery_refused(sim):
    server, http = sim
    url = f"{server.url}/receivers/webhook/audit"
    good = SignedWebhookClient("audit", WebhookConfig(url, SecretStr(rx.WEBHOOK_SECRET)), http)
    await good.deliver(MESSAGE, {})
    assert server.sim.receivers.state.webhooks[0]["body"]["chain_id"] == "chain-1"
    forged = SignedWebhookClient("audit", WebhookConfig(url, SecretStr("guess")), http)
    with pytest.raises(PlatformError) as caught:
        await forged.deliver(MESSAGE, {})
    assert caught.value.kind is ErrorKind.AUTH
    stale = SignedWebhookClient(
        "audit", WebhookConfig(url, SecretStr(rx.WEBHOOK_SECRET)), http, clock=lambda: 1000.0
    )
    with pytest.raises(PlatformError):
        await stale.deliver(MESSAGE, {})  # a replay outside the tolerance


async def test_an_outage_answers_503_for_its_time_then_lets_through(sim):
    server, http = sim
    now = [1_700_000_000.0]
    server.sim.receivers.clock = lambda: now[0]
    answer = await http.post(f"{server.url}/_sim/receivers/outage", json={"seconds": 30})
    assert answer.status_code == 200
    pd = PagerDutyClient("oncall", PagerDutyConfig(SecretStr(KEY), pd_url(server)), http)
    with pytest.raises(PlatformError) as caught:
        await pd.deliver(MESSAGE, {})
    assert caught.value.kind is ErrorKind.TRANSIENT
    now[0] += 30
    await pd.deliver(MESSAGE, {})
    log = (await http.get(f"{server.url}/_sim/receivers")).json()["log"]
    assert [r["status"] for r in log] == [503, 202]
    assert log[1]["body"]["routing_key"] == "***"
    assert json.dumps(log)  # the log is plain JSON for other processes


async def test_pagerduty_throttles_above_its_rate_with_retry_after(sim):
    server, http = sim
    event = {"routing_key": KEY, "event_action": "resolve", "dedup_key": "k"}
    for _ in range(rx.UNCONFIRMED["pagerduty_per_minute"]):
        assert (await http.post(pd_url(server), json=event)).status_code == 202
    throttled = await http.post(pd_url(server), json=event)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"]
