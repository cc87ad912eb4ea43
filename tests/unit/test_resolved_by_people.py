"""A chain handed to people closes as resolved by people when its run later succeeds."""

from __future__ import annotations

import pytest

from streams.policy.chains import RESOLVED_BY_PEOPLE, Chain, ChainPolicy, on_event
from streams.policy.model import Alert, ChainEvent, Classification
from streams.policy.notices import notices_for

NOW = 1_700_000_000_000
FAILED = Alert(alert_id="f", source="adf", kind="pipeline_run", scope="f1", run_id="r1")
SUCCEEDED = Alert(
    alert_id="s", source="adf", kind="pipeline_run", scope="f1", run_id="r2", signal="success"
)
KIND = Classification("UserErrorColumnNameInvalid", "high", "manual", 0, (), "never automate")


def event(kind: str, alert: Alert, **fields) -> ChainEvent:
    return ChainEvent(kind=kind, chain_id="c1", dedup_key="k", at=NOW, alert=alert, **fields)


def handed_over() -> Chain:
    step = on_event(
        None, event("failure", FAILED, classification=KIND), now_ms=NOW, policy=ChainPolicy()
    )
    assert step.chain is not None and step.chain.state == "manual"
    return step.chain


@pytest.mark.parametrize("state", ["manual", "gave_up"])
def test_a_success_after_a_hand_off_resolves_the_chain_by_people(state):
    chain = Chain(**{**handed_over().to_dict(), "state": state, "history": (), "runs": ()})
    step = on_event(
        chain, event("success", SUCCEEDED), now_ms=NOW + 3_600_000, policy=ChainPolicy()
    )
    assert step.chain is not None and step.chain.state == "resolved"
    (row,) = step.outcomes
    assert row.state == "resolved" and row.detail.startswith(RESOLVED_BY_PEOPLE)
    assert row.first_seen_at == chain.first_seen_at  # time to resolution spans the hand-off
    (notice,) = notices_for(step.chain, SUCCEEDED, None, step.outcomes)
    assert notice.step == "resolved"  # the incident people were paged for closes
    again = on_event(
        step.chain, event("success", SUCCEEDED), now_ms=NOW + 3_600_001, policy=ChainPolicy()
    )
    assert again.outcomes == () and again.chain == step.chain  # once


def test_our_own_resolution_report_does_not_close_a_hand_off():
    chain = handed_over()
    step = on_event(chain, event("resolved", FAILED), now_ms=NOW, policy=ChainPolicy())
    assert step.chain == chain and step.outcomes == ()
