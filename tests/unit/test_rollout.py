"""The rollout table: the mode by scope, first match wins, the global mode elsewhere."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipemedic import cli
from streams.policy.chains import ChainPolicy, on_event
from streams.policy.explain import explain
from streams.policy.model import Alert, Classification, OutcomeState
from streams.policy.rollout import Rollout, RolloutError, parse_rollout
from streams.policy.rules import Classifier, RulesError, load_rollout
from streams.policy.scope import EstateScope
from tests.unit.test_dedup_chains import GATEWAY, failure

ROOT = Path(__file__).resolve().parents[2]
SERVER = Classification("InternalServerError", "medium", "retry_pipeline", 2, (60,), "5xx")
HIGH = Classification("UserErrorColumnNameInvalid", "high", "manual", 0, (), "never automate")


def alert(scope: str = "adf-sales-dev", pipeline: str = "Load_Orders", source: str = "adf"):
    kind = "pipeline_run" if source == "adf" else "job_run"
    return Alert("a", source, kind, scope=scope, run_id="r1", pipeline=pipeline)


def rollout(rows: list[dict], default: str = "automatic", tags=None) -> Rollout:
    return Rollout(parse_rollout(rows), default_mode=default, target_tags=tags or {})


@pytest.mark.parametrize(
    ("row", "hit", "miss"),
    [
        ({"targets": "adf-*-dev"}, alert(), alert(scope="adf-sales-prod")),
        ({"targets": ["ADF-SALES-DEV"]}, alert(), alert(scope="adf-sales-devx")),
        ({"tags": {"env": "prod"}}, alert(scope="adf-sales-prod"), alert()),
        ({"pipelines": "load_*"}, alert(), alert(pipeline="Copy_Orders")),
        ({"sources": "databricks"}, alert(scope="123", source="databricks"), alert()),
    ],
)
def test_each_scope_field_matches_its_own_targets(row, hit, miss):
    table = rollout(
        [{"name": "r", "mode": "observe", **row}],
        tags={"adf-sales-prod": {"env": "prod"}, "adf-sales-dev": {"env": "dev"}},
    )
    assert table.decide(hit, GATEWAY) == ("observe", "rollout row 'r'")
    assert table.decide(miss, GATEWAY) == ("automatic", "global mode")


def test_error_type_and_risk_rows_read_the_classification():
    table = rollout(
        [
            {"name": "low", "mode": "automatic", "error_types": ["GatewayTimeout"]},
            {"name": "medium", "mode": "approval", "risks": "medium"},
        ],
        default="observe",
    )
    assert table.decide(alert(), GATEWAY)[0] == "automatic"
    assert table.decide(alert(), SERVER)[0] == "approval"
    assert table.decide(alert(), HIGH)[0] == "observe"


def test_first_match_wins_and_every_field_of_a_row_must_match():
    table = rollout(
        [
            {"name": "prod", "mode": "observe", "tags": {"env": "prod"}},
            {
                "name": "pilot",
                "mode": "approval",
                "tags": {"env": "dev"},
                "error_types": ["GatewayTimeout", "HttpConnectionFailed"],
            },
            {"name": "rest", "mode": "observe"},
        ],
        tags={"adf-sales-prod": {"env": "prod"}, "adf-sales-dev": {"env": "dev"}},
    )
    assert table.decide(alert(scope="adf-sales-prod"), GATEWAY)[1] == "rollout row 'prod'"
    assert table.decide(alert(), GATEWAY) == ("approval", "rollout row 'pilot'")
    assert table.decide(alert(), SERVER) == ("observe", "rollout row 'rest'")
    # a target the estate gives no tags matches no tag row
    assert table.decide(alert(scope="adf-other"), GATEWAY)[1] == "rollout row 'rest'"


def test_invalid_rows_are_all_named():
    with pytest.raises(RolloutError) as caught:
        parse_rollout(
            [
                {"name": "a", "mode": "sometimes"},
                {"mode": "observe"},
                {"name": "b", "mode": "observe", "risks": ["extreme"]},
                {"name": "c", "mode": "observe", "factory": "x"},
                {"name": "d", "mode": "observe", "sources": "sap"},
            ]
        )
    message = str(caught.value)
    for expected in (
        "rollout[0]: mode: expected one of observe, approval, automatic",
        "rollout[1]: name: required string",
        "rollout[2]: risks: extreme not among low, medium, high",
        "rollout[3]: unknown keys: factory",
        "rollout[4]: sources: sap not among adf, databricks",
    ):
        assert expected in message
    with pytest.raises(RolloutError, match="used twice"):
        parse_rollout([{"name": "a", "mode": "observe"}, {"name": "a", "mode": "automatic"}])


def test_a_scoped_observe_row_writes_nothing_and_says_which_row():
    policy = ChainPolicy(
        mode="automatic",
        rollout=rollout([{"name": "prod", "mode": "observe", "targets": "f1"}]),
    )
    step = on_event(None, failure(alert(scope="f1")), now_ms=0, policy=policy)
    assert step.schedule.action == "manual"  # the people hook only, no platform action
    assert [o.state for o in step.outcomes][0] == OutcomeState.OBSERVED.value
    assert "(rollout row 'prod')" in step.outcomes[0].detail
    elsewhere = on_event(None, failure(alert(scope="f2")), now_ms=0, policy=policy)
    assert elsewhere.schedule.action == "retry_pipeline"  # the global mode: automatic


def test_a_scoped_approval_row_holds_the_action():
    policy = ChainPolicy(
        mode="observe",
        rollout=rollout([{"name": "pilot", "mode": "approval", "error_types": "GatewayTimeout"}]),
    )
    step = on_event(None, failure(alert(scope="f1")), now_ms=0, policy=policy)
    assert step.chain.state == "awaiting_approval" and step.schedule is None
    assert "approval needed (rollout row 'pilot')" in step.outcomes[0].detail
    other = on_event(None, failure(alert(scope="f1"), SERVER), now_ms=0, policy=policy)
    assert other.outcomes[0].state == OutcomeState.OBSERVED.value  # the global observe


def test_the_shipped_example_is_the_seeds_rollout():
    rows = load_rollout(ROOT / "deploy/rules.example.yaml")
    assert [r.mode for r in rows] == ["observe", "approval", "observe"]
    pilot = rows[1]
    assert set(pilot.error_types) == {"GatewayTimeout", "HttpConnectionFailed"}
    assert dict(pilot.tags) == {"env": "dev"}


def test_a_rules_file_with_a_bad_rollout_is_refused(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rollout": [{"name": "x", "mode": "yolo"}]}))
    with pytest.raises(RulesError, match="rollout\\[0\\]: mode"):
        load_rollout(path)


DEMO_ALERT = (ROOT / "pipemedic/data/demo/alerts.jsonl").read_text().splitlines()[0].encode()


def test_explain_says_what_would_happen_without_doing_it():
    table = rollout(
        [{"name": "prod", "mode": "approval", "tags": {"env": "prod"}}],
        tags={"adf-sales-prod": {"env": "prod"}},
    )
    scope = EstateScope.of(["adf-sales-prod"], [])
    (found,), skipped = explain(
        DEMO_ALERT, classify=Classifier(), rollout=table, scope=scope, now_ms=0
    )
    row = found.row()
    assert (row["target"], row["error_type"], row["mode"]) == (
        "adf-sales-prod",
        "GatewayTimeout",
        "approval",
    )
    assert row["set_by"] == "rollout row 'prod'"
    assert row["would"].startswith("ask a person to approve retry_pipeline in ")
    assert skipped == ()
    (outside,), _ = explain(
        DEMO_ALERT, classify=Classifier(), rollout=table, scope=EstateScope.of([], []), now_ms=0
    )
    assert outside.would == "ignore: ADF factory 'adf-sales-prod' is not in the estate"
    observe = replace(table, rows=(replace(table.rows[0], mode="observe"),))
    (seen,), _ = explain(DEMO_ALERT, classify=Classifier(), rollout=observe, scope=scope, now_ms=0)
    assert (
        seen.would.startswith("record only: would retry_pipeline")
        and "no platform write" in seen.would
    )


def test_pipemedic_policy_and_policy_explain(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s")
    monkeypatch.setenv("DATABRICKS_TOKEN", "t")
    monkeypatch.setenv("PIPEMEDIC_MODE", "automatic")
    estate, rules = ROOT / "deploy/estate.example.yaml", ROOT / "deploy/rules.example.yaml"
    args = ["--rules", str(rules), "--estate", str(estate), "--json"]
    assert cli.main(["policy", *args]) == 0
    shown = json.loads(capsys.readouterr().out)
    table, limits = shown["rollout"], shown["limits"]
    assert [r["name"] for r in table][-1] == "(global mode)" and table[-1]["mode"] == "automatic"
    assert [(r["limit"], r["name"]) for r in limits] == [
        ("cap", "three-an-hour"),
        ("cap", "ten-per-factory"),
        ("storm", "factory-outage"),
        ("storm", "same-error-across-factories"),
        ("budget", ""),
    ]
    assert limits[0]["rule"] == "at most 3 actions per target within 3600s"
    payload = DEMO_ALERT.replace(b"adf-sales-prod", b"adf-dev")
    (tmp_path / "alert.json").write_bytes(payload)
    assert cli.main(["policy", "explain", str(tmp_path / "alert.json"), *args]) == 0
    (row,) = json.loads(capsys.readouterr().out)["alerts"]
    assert (row["target"], row["mode"], row["set_by"]) == (
        "adf-dev",
        "approval",
        "rollout row 'pilot-low-risk-nonprod'",
    )
    (tmp_path / "bad.json").write_text("[1, 2")
    assert cli.main(["policy", "explain", str(tmp_path / "bad.json"), *args]) == 1
    assert "a worker dead-letters it" in capsys.readouterr().err
    assert cli.main(["policy", "explain", *args]) == 1
    assert "needs an alert" in capsys.readouterr().err
