"""The demo's channels at the simulator, secrets in files; per chain what people were told."""

from __future__ import annotations

import yaml

from pipemedic.demo_notifications import at_simulator, told_per_chain
from pipemedic.stack import DEMO_DATA
from streams.estate import parse_estate


def test_the_demo_channels_point_at_the_simulator_with_secrets_in_files(tmp_path):
    section = yaml.safe_load((DEMO_DATA / "estate_extras.yaml").read_text())["notifications"]
    filled = at_simulator(section, "http://127.0.0.1:9", tmp_path)
    channels = filled["channels"]
    assert channels["oncall"]["url"] == "http://127.0.0.1:9/receivers/pagerduty/v2/enqueue"
    assert channels["oncall"]["routing_key"].startswith("file:")
    assert channels["data-eng"]["url"].startswith("file:")  # a Workflows URL is a secret
    estate = parse_estate({"notifications": filled})
    teams = estate.notifications.channels["data-eng"]
    assert teams.url.get_secret_value().startswith("http://127.0.0.1:9/receivers/teams/")
    assert [r.targets for r in estate.notifications.routing_table()] == [
        ("oncall", "ops", "audit"),
        ("ops", "data-eng", "audit"),
    ]


def test_told_per_chain_keeps_the_last_word_per_channel_and_transition():
    rows = [
        {"chain_id": "c1", "state": "received"},
        {
            "chain_id": "c1",
            "state": "notify_retrying",
            "action": "notify:pd",
            "platform_status": "handed_to_people",
        },
        {
            "chain_id": "c1",
            "state": "notified",
            "action": "notify:pd",
            "platform_status": "handed_to_people",
        },
        {
            "chain_id": "c1",
            "state": "notify_failed",
            "action": "notify:ops",
            "platform_status": "handed_to_people",
            "detail": "x",
        },
    ]
    assert told_per_chain(rows) == {
        "c1": [
            {"channel": "pd", "transition": "handed_to_people", "delivered": True, "attempts": 2},
            {
                "channel": "ops",
                "transition": "handed_to_people",
                "delivered": False,
                "attempts": 1,
                "failed": "x",
            },
        ]
    }
