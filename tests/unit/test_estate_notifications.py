"""The estate's notifications section: strict like the rest, secrets resolved, pages plain."""

from __future__ import annotations

import pytest

from streams.estate import EstateError, parse_estate
from streams.policy import approval_pages

KEY = "0123456789abcdef0123456789abcdef"


def test_channels_are_named_once_with_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("PD_KEY", KEY)
    estate = parse_estate(
        {
            "notifications": {
                "channels": {"oncall": {"type": "pagerduty", "routing_key": "env:PD_KEY"}},
                "routes": [{"risk": "high", "targets": ["oncall"]}],
                "approval_url": "https://pm.example",
                "approval_ttl_s": 600,
            }
        }
    )
    section = estate.notifications
    assert section.channels["oncall"].routing_key.get_secret_value() == KEY
    assert KEY not in repr(section)
    (route,) = section.routing_table()
    assert (route.targets, route.risk, route.scope) == (("oncall",), "high", "*")
    assert section.approval_ttl_s == 600


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"routes": [{"targets": ["nobody"]}]}, "names channel 'nobody', which is not defined"),
        ({"channels": {"x": {"type": "fax"}}}, "estate.notifications.channels.x"),
        ({"channels": {"x": {"type": "teams"}}}, "missing required key 'url'"),
        ({"channels": {"x": {"type": "slack"}}}, "webhook_url or bot_token"),
        ({"channels": {"x": {"type": "slack", "bot_token": "t"}}}, "needs channel"),
        ({"chanels": {}}, "unknown key 'chanels'"),
        ({"approval_ttl_s": 0}, "approval_ttl_s"),
    ],
)
def test_a_mistake_names_its_place(section, message):
    with pytest.raises(EstateError, match=message):
        parse_estate({"notifications": section})


def test_pages_confirm_first_and_refusals_say_what_happened():
    page = approval_pages.confirmation("c<1>", "approve", {"sig": 'a"b'}, ".")
    assert page.status == 200 and 'method="post"' in page.body
    assert "c&lt;1&gt;" in page.body and 'value="a&quot;b"' in page.body
    assert {r: approval_pages.refusal(r).status for r in ("tampered", "expired", "decided")} == {
        "tampered": 403,
        "expired": 410,
        "decided": 409,
    }
    assert approval_pages.HEADERS["Cache-Control"] == "no-store"
