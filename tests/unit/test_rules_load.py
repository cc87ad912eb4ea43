"""Overriding the rule table and schedules from YAML, and the ``pipemedic rules`` report rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.policy.model import Action, Alert
from streams.policy.rules import (
    DEFAULT_RULES,
    DEFAULT_SCHEDULES,
    RulesError,
    classify,
    load_rules,
    parse_rules,
    rules_table_rows,
)

GATEWAY_504 = Alert(
    alert_id="a",
    source="adf",
    kind="activity_run",
    error_code="2108",
    message="Response status code: 'GatewayTimeout (504)'",
)
DEADLOCK = Alert(
    alert_id="b",
    source="adf",
    kind="activity_run",
    error_code="2200",
    message="Transaction (Process ID 64) was deadlocked on lock resources",
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    rules, schedules = load_rules(write(tmp_path, ""))
    assert rules == DEFAULT_RULES and dict(schedules) == dict(DEFAULT_SCHEDULES)


def test_a_new_row_and_schedule_take_priority_without_code_changes(tmp_path: Path) -> None:
    rules, schedules = load_rules(
        write(
            tmp_path,
            """
schedules:
  SqlDeadlock: [5, 30]
rules:
  - name: adf-sql-deadlock
    error_type: SqlDeadlock
    action: retry_pipeline
    risk: low
    match: {source: adf, code: "2200", text: "deadlocked"}
""",
        )
    )
    assert rules[0].name == "adf-sql-deadlock" and len(rules) == len(DEFAULT_RULES) + 1
    result = classify(DEADLOCK, rules, schedules)
    assert (result.error_type, result.action, result.backoff_s, result.max_retries) == (
        "SqlDeadlock",
        "retry_pipeline",
        (5, 30),
        2,
    )
    assert classify(DEADLOCK).error_type == "Unknown"  # the defaults are untouched


def test_an_existing_row_changes_only_the_keys_given(tmp_path: Path) -> None:
    rules, schedules = load_rules(
        write(
            tmp_path,
            """
schedules:
  GatewayTimeout: [30, 120]
rules:
  - name: http-gateway
    max_retries: 1
    note: pilot phase
""",
        )
    )
    row = next(r for r in rules if r.name == "http-gateway")
    assert row.text == next(r for r in DEFAULT_RULES if r.name == "http-gateway").text
    result = classify(GATEWAY_504, rules, schedules)
    assert (result.backoff_s, result.max_retries, result.reason) == (
        (30, 120),
        1,
        "rule:http-gateway (pilot phase)",
    )


def test_observe_only_rollout_can_turn_a_row_manual(tmp_path: Path) -> None:
    rules, schedules = load_rules(
        write(tmp_path, "rules:\n  - {name: http-gateway, action: manual}\n")
    )
    assert classify(GATEWAY_504, rules, schedules).action == "manual"


def test_a_disabled_row_is_removed_and_position_last_goes_before_unknown(tmp_path: Path) -> None:
    rules, _ = load_rules(
        write(
            tmp_path,
            """
rules:
  - {name: http-gateway, disabled: true}
  - name: adf-any-2108
    error_type: GatewayTimeout
    action: retry_pipeline
    risk: medium
    position: last
    match: {source: adf, code: "2108"}
""",
        )
    )
    names = [r.name for r in rules]
    assert "http-gateway" not in names
    assert names[-2:] == ["adf-any-2108", "unknown"]


def test_match_keys_given_replace_those_constraints_and_empty_clears(tmp_path: Path) -> None:
    rules, _ = load_rules(
        write(
            tmp_path,
            """
rules:
  - name: adf-throttled
    match: {code: "", text: "exceeding rate limit", kinds: [activity_run]}
""",
        )
    )
    row = next(r for r in rules if r.name == "adf-throttled")
    assert (row.source, row.code, row.text, row.kinds) == (
        "adf",
        "",
        "exceeding rate limit",
        ("activity_run",),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: {a: 1}", "rules: expected a list"),
        (
            "nonsense: 1",
            "expected a mapping with only 'caps', 'rollout', 'rules', 'schedules', 'storms' keys",
        ),
        ("schedules: {X: [0]}", "schedules.X: expected a non-empty list of seconds"),
        ("schedules: {X: []}", "schedules.X: expected a non-empty list"),
        (
            "rules: [{name: r, error_type: E, action: reboot, risk: low, match: {code: x}}]",
            "action: 'reboot' is not one of",
        ),
        (
            "rules: [{name: r, error_type: E, action: manual, risk: huge, match: {code: x}}]",
            "risk: 'huge' is not one of",
        ),
        ("rules: [{name: r, error_type: E, action: manual, risk: low}]", "needs a non-empty match"),
        ("rules: [{name: r, action: manual, risk: low, match: {code: x}}]", "needs error_type"),
        (
            "rules: [{name: r, error_type: E, action: manual, risk: low, match: {code: '('}}]",
            "match.code: bad regex",
        ),
        (
            "rules: [{name: r, error_type: E, action: manual, risk: low, match: {colour: red}}]",
            "unknown keys: match.colour",
        ),
        (
            "rules: [{name: r, error_type: E, action: manual, risk: low, match: {kinds: [vm]}}]",
            "match.kinds",
        ),
        (
            "rules: [{name: r, error_type: E, action: manual, risk: low, match: {source: aws}}]",
            "match.source",
        ),
        (
            "rules: [{name: r, error_type: E, action: retry_pipeline, risk: low, match: {code: x}}]",
            "needs schedule 'E'",
        ),
        (
            "rules: [{name: unknown, action: retry_pipeline, schedule: GatewayTimeout}]",
            "Unknown must stay manual",
        ),
        ("rules: [{name: nope, disabled: true}]", "disabled: no rule named 'nope'"),
        (
            "rules: [{name: http-gateway, max_retries: 99}]",
            "max_retries: expected an integer 0..20",
        ),
        (
            "rules: [{name: r, error_type: E, action: manual, risk: low, match: {code: x}, position: middle}]",
            "position",
        ),
        ("rules: [7]", "rules[0]: expected a mapping"),
    ],
)
def test_invalid_files_fail_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RulesError, match=re.escape(message)):
        load_rules(write(tmp_path, text))


def test_every_problem_is_reported_at_once() -> None:
    doc = {"rules": [{"name": "a"}, {"name": "b", "risk": "x"}], "schedules": {"S": "soon"}}
    with pytest.raises(RulesError) as caught:
        parse_rules(doc)
    assert str(caught.value).count("\n") == 2  # three problems, three lines


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(write(tmp_path, "rules: [\n"))


def test_report_rows_follow_the_table_order_and_show_the_schedule() -> None:
    rows = rules_table_rows(DEFAULT_RULES, DEFAULT_SCHEDULES)
    assert [row["rule"] for row in rows] == [rule.name for rule in DEFAULT_RULES]
    gateway = next(row for row in rows if row["rule"] == "http-gateway")
    assert gateway | {"when": ""} == {
        "rule": "http-gateway",
        "when": "",
        "error_type": "GatewayTimeout",
        "action": Action.RETRY_PIPELINE.value,
        "risk": "low",
        "schedule": "GatewayTimeout",
        "backoff_s": "10/30/60",
        "max_retries": 3,
        "note": "",
    }
    assert gateway["when"].startswith("source=adf text=")
    unknown = rows[-1]
    assert (unknown["when"], unknown["action"], unknown["backoff_s"]) == ("always", "manual", "")
