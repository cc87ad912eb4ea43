"""tune's decisions on rows: the thresholds hold at their edges; a patch merges proposals;
the audit trail keeps an unmatched alert's message (and only that one's)."""

from __future__ import annotations

import pytest

from streams.policy.dedup import decide, outcome_for
from streams.policy.model import Alert, Classification, ClassifiedAlert
from streams.policy.rules import DEFAULT_RULES, DEFAULT_SCHEDULES, rules_table_rows
from streams.policy.tuning import Thresholds, propose, rules_patch, signature

ROWS = rules_table_rows(DEFAULT_RULES, DEFAULT_SCHEDULES)


def chains(error_type: str, fixed: int, gave_up: int, attempts: int = 1) -> list[dict]:
    return [
        {
            "error_type": error_type,
            "action": "retry_pipeline",
            "result": "remediated",
            "attempts": attempts,
        }
    ] * fixed + [
        {"error_type": error_type, "action": "retry_pipeline", "result": "gave_up", "attempts": 3}
    ] * gave_up


def kinds(found) -> list[tuple[str, str]]:
    return [(p.kind, p.subject) for p in found]


@pytest.mark.parametrize(
    ("fixed", "gave_up", "expected"),
    [
        (1, 9, [("manual", "GatewayTimeout")]),  # 10% over 10 chains
        (2, 8, []),  # 20% is not "rarely"
        (0, 9, []),  # 9 chains are not evidence enough
    ],
)
def test_an_action_that_rarely_works(fixed: int, gave_up: int, expected) -> None:
    found = propose(chains("GatewayTimeout", fixed, gave_up), [], [], ROWS, DEFAULT_SCHEDULES)
    assert kinds(found) == expected


def test_first_attempt_successes_shorten_only_a_long_first_wait() -> None:
    rows = chains("ThrottlingError", 10, 0) + chains("HttpConnectionFailed", 10, 0)
    found = propose(rows, [], [], ROWS, DEFAULT_SCHEDULES)
    assert kinds(found) == [("schedule", "ThrottlingError")]
    assert found[0].schedules == {"ThrottlingError": [7, 60, 120, 300, 600]}
    one_retry_more = chains("ThrottlingError", 9, 0) + chains("ThrottlingError", 1, 0, attempts=2)
    assert propose(one_retry_more, [], [], ROWS, DEFAULT_SCHEDULES) == []


def test_recurring_unmatched_messages_become_a_rule_with_samples() -> None:
    rows = [
        {"source": "adf", "detail": f"new failure | message: Job 7 lost lease {n} (id {n * 7})"}
        for n in range(3)
    ]
    [rule] = propose([], rows, [], ROWS, DEFAULT_SCHEDULES, Thresholds(min_recurring=3))
    assert signature("Job 7 lost lease 2 (id 14)") == "Job # lost lease # (id #)"
    assert rule.rules[0]["match"] == {"text": "lost\\ lease", "source": "adf"}
    assert rule.evidence["samples"] == [r["detail"].split(" | message: ")[1] for r in rows]


def test_the_patch_merges_rule_entries_and_schedules() -> None:
    found = propose(
        chains("GatewayTimeout", 1, 9) + chains("ThrottlingError", 10, 0),
        [],
        [],
        ROWS,
        DEFAULT_SCHEDULES,
    )
    patch = rules_patch(found)
    assert patch["schedules"] == {"ThrottlingError": [7, 60, 120, 300, 600]}
    assert [r["name"] for r in patch["rules"]] == ["http-gateway", "adf-timeout"]
    assert rules_patch([]) == {}


@pytest.mark.parametrize(("error_type", "kept"), [("Unknown", True), ("GatewayTimeout", False)])
def test_the_received_row_keeps_the_message_only_when_no_rule_matched(error_type, kept) -> None:
    alert = Alert("a", "adf", "pipeline_run", scope="f", run_id="r", message="Snowflake down")
    record = ClassifiedAlert(
        alert, 1, classification=Classification(error_type, "high", "manual", 0, (), "rule")
    )
    decision = decide(None, alert, now_ms=1, horizon_ms=3_600_000)
    row = outcome_for(decision, record, "f|r", now_ms=1)
    assert row.detail == decision.reason + (" | message: Snowflake down" if kept else "")
