"""Topic profiles: where each logical topic travels, the lane header on shared topics, and
the compact profile's tables as views of one table with one changelog."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipemedic import cli
from pipemedic.approvals import _apply
from pipemedic.worker import planned_topics
from streams.app import TableView, build_topology, changelog_topics, table_changelog
from streams.policy import routing
from streams.policy.model import Action
from streams.policy.topic_plan import tier_named
from streams.settings import Settings

DEMO_TIERS = (1, 2, 3, 5, 10, 15, 30, 60, 120, 300, 600)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("PIPEMEDIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIPEMEDIC_DATA_DIR", str(tmp_path / "data"))


def test_the_default_profile_gives_every_logical_topic_its_own():
    names = routing.all_topics(DEMO_TIERS)
    assert routing.action_topic("retry_pipeline") in names and "delay-600s" in names
    for name in names:
        assert routing.physical_topic(name) == name and routing.lane_of(name) is None


def test_the_compact_profile_folds_stages_actions_and_tiers():
    compact = routing.COMPACT_PROFILE
    assert routing.all_topics(DEMO_TIERS, profile=compact) == (
        routing.RAW,
        routing.STAGES,
        routing.OUTCOMES,
        routing.DEAD_LETTER,
        routing.NOTIFICATIONS,
        routing.CONTROL,
        routing.ACTIONS,
        routing.DELAYS,
    )
    for stage in (routing.ENRICH, routing.CLASSIFIED, routing.CHAIN_EVENTS, routing.ADMISSION):
        assert routing.destination(stage, compact, "shadow-") == (
            "shadow-stages",
            [(routing.LANE_HEADER, stage.encode())],
        )
    for action in Action:
        name = routing.action_topic(action.value)
        assert routing.physical_topic(name, compact) == routing.ACTIONS
        assert routing.lane_of(name, compact) == name
    # one reader, each record with its own due time: no lane needed
    assert routing.destination("delay-30s", compact) == (routing.DELAYS, None)
    # people are told on their own topic, so a slow channel never holds remediation back
    assert routing.destination(routing.NOTIFICATIONS, compact) == (routing.NOTIFICATIONS, None)


def test_the_compact_plan_fits_event_hubs_standard_changelog_included(tmp_path):
    settings = Settings(topic_profile="compact", data_dir=tmp_path)
    planned = planned_topics(settings)
    assert len(planned) <= tier_named("standard").max_event_hubs
    assert changelog_topics(settings) == ("pipemedic-state-changelog",)
    assert planned[-1] == "pipemedic-state-changelog"
    assert table_changelog(settings, "chains") == ("pipemedic-state-changelog", "chains/")
    default = Settings(data_dir=tmp_path)
    assert table_changelog(default, "chains") == ("pipemedic-chains-changelog", "")
    assert len(planned_topics(default)) > tier_named("standard").max_event_hubs


def test_topics_plan_takes_the_profile(capsys):
    assert cli.main(["topics", "plan", "--profile", "compact", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["count"] <= 10
    assert [t["name"] for t in plan["topics"] if t["cleanup_policy"] == "compact"] == [
        "control",
        "pipemedic-state-changelog",
    ]


class Dict(dict):
    """What a view uses of a Faust table."""


def test_table_views_keep_their_keys_apart_in_one_table():
    shared = Dict()
    dedup, chains = TableView(shared, "dedup/"), TableView(shared, "chains/")
    dedup["run-1"] = {"seen": 1}
    chains["run-1"] = {"state": "scheduled"}
    assert shared == {"dedup/run-1": {"seen": 1}, "chains/run-1": {"state": "scheduled"}}
    assert dedup.get("run-1") == {"seen": 1} and chains["run-1"] == {"state": "scheduled"}
    assert dedup.get("missing") is None and "run-1" in chains and "other" not in chains
    assert list(chains.items()) == [("run-1", {"state": "scheduled"})]
    assert list(dedup.values()) == [{"seen": 1}]
    assert dedup.pop("run-1") == {"seen": 1} and dedup.pop("run-1", None) is None
    assert list(shared) == ["chains/run-1"]


def test_a_changelog_read_keeps_only_its_tables_keys():
    table: dict = {}
    for key, value in (
        ("chains/a", {"state": "waiting"}),
        ("dedup/a", {"seen": 1}),
        ("chains/b", {"state": "resolved"}),
        ("chains/b", None),  # deleted
    ):
        _apply(
            table,
            json.dumps(key).encode(),
            json.dumps(value).encode() if value else None,
            "chains/",
        )
    assert table == {"a": {"state": "waiting"}}


def _event(headers):
    return SimpleNamespace(message=SimpleNamespace(headers=headers))


def test_a_stage_takes_its_lane_and_a_record_without_one_goes_to_the_first_lane(tmp_path):
    compact = build_topology(Settings(topic_profile="compact", data_dir=tmp_path), (5,))
    assert compact.classified is compact.chain_events  # one Faust topic: ``stages``
    labelled = _event([(routing.LANE_HEADER, routing.CHAIN_EVENTS.encode())])
    assert compact.carries(routing.CHAIN_EVENTS, labelled)
    assert not compact.carries(routing.CLASSIFIED, labelled)
    unlabelled = _event([])
    assert compact.carries(routing.ENRICH, unlabelled)  # the first lane dead-letters it
    assert not compact.carries(routing.CLASSIFIED, unlabelled)
    stray = _event([(routing.LANE_HEADER, b"no-such-stage")])  # a lane nobody here reads
    assert compact.carries(routing.ENRICH, stray) and not compact.carries(routing.CLASSIFIED, stray)
    admission = _event([(routing.LANE_HEADER, routing.ADMISSION.encode())])
    assert compact.carries(routing.ENRICH, admission)  # built without admission: nobody reads it
    manual = routing.action_topic("manual")
    assert compact.carries(manual, _event(None))
    assert not compact.carries(routing.action_topic("retry_pipeline"), _event(None))
    assert compact.headers_for(routing.ADMISSION) == [(routing.LANE_HEADER, b"admission")]
    assert isinstance(compact.dedup, TableView) and compact.dedup.table is compact.chains.table

    default = build_topology(Settings(data_dir=tmp_path), (5,))
    assert default.classified is not default.chain_events
    assert default.carries(routing.CLASSIFIED, labelled)  # nothing is shared: all is its own
    assert default.headers_for(routing.CLASSIFIED) is None
