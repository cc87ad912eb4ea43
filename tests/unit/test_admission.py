"""Admission: the budget, the caps and the storm guard, decided against a plain dict."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streams.policy.admission import (
    ADMITTED,
    HELD,
    STATE,
    STORM,
    STORM_OVER,
    Admission,
    AdmissionPolicy,
    goes_to_admission_now,
    needs_admission,
)
from streams.policy.limits import AdmissionError, Cap, StormRule, parse_caps, parse_storms
from streams.policy.model import ActionRequest, Alert, ChainEventKind, Classification

T0 = 1_700_000_000_000
GATEWAY = Classification("GatewayTimeout", "low", "retry_pipeline", 3, (5,), "adf-2108")


def request(
    chain: str, *, factory: str = "adf-1", pipeline: str = "p", action="retry_pipeline", **kw
) -> ActionRequest:
    alert = Alert(
        alert_id=chain, source="adf", kind="pipeline_run", scope=factory, pipeline=pipeline
    )
    return ActionRequest(
        action_id=f"{chain}#1:{action}",
        chain_id=chain,
        dedup_key=chain,
        action=action,
        step=kw.pop("step", "execute"),
        attempt=1,
        max_attempts=3,
        due_at=kw.pop("due_at", T0 + 5000),
        alert=alert,
        classification=GATEWAY,
        reason=kw.pop("reason", "backoff"),
        **kw,
    )


def admission(**policy) -> Admission:
    return Admission(AdmissionPolicy(**policy), {})


def admitted(effects) -> bool:
    return len(effects.requests) == 1 and effects.requests[0].context.get(STATE) == ADMITTED


def handed_to_people(effects) -> str:
    [event] = effects.chain_events
    assert event.kind == ChainEventKind.ACTION_ERROR.value
    return event.detail


# ---- what goes to admission ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needs"),
    [
        ({}, True),
        ({"step": "verify"}, False),  # reads, not a new action
        ({"action": "manual"}, False),  # paging people is never held back
        ({"context": {STATE: ADMITTED}}, False),
        ({"context": {STATE: HELD}}, True),
    ],
)
def test_only_new_platform_actions_need_admission(changes, needs):
    assert needs_admission(replace(request("c"), **changes)) is needs


def test_a_fresh_action_goes_at_once_and_a_held_one_when_it_is_due():
    fresh = request("c", due_at=T0 + 60_000)
    held = replace(fresh, context={STATE: HELD})
    assert goes_to_admission_now(fresh, T0)
    assert not goes_to_admission_now(held, T0)
    assert goes_to_admission_now(held, T0 + 60_000)


# ---- the daily budget ------------------------------------------------------------------------


def test_the_budget_admits_exactly_what_it_can_pay_for_and_hands_the_rest_to_people():
    gate = admission(budget_usd=1.0, action_cost_usd={"retry_pipeline": 0.4})
    results = [gate.decide(request(f"c{i}"), T0) for i in range(4)]
    assert [admitted(r) for r in results] == [True, True, False, False]
    assert "daily cost cap: $0.80 of $1.00" in handed_to_people(results[2])
    assert gate.spent_usd(T0) == pytest.approx(0.8)


def test_the_budget_starts_afresh_on_a_new_utc_day_and_free_actions_always_pass():
    gate = admission(budget_usd=1.0, action_cost_usd={"retry_pipeline": 1.0})
    assert admitted(gate.decide(request("a"), T0))
    assert not admitted(gate.decide(request("b"), T0))
    assert admitted(gate.decide(request("c", action="upstream_check"), T0))  # costs nothing
    assert admitted(gate.decide(request("d"), T0 + 24 * 3600 * 1000))


# ---- caps ------------------------------------------------------------------------------------


def test_a_cap_per_target_defers_until_its_window_has_room_and_says_so_once():
    gate = admission(caps=(Cap("target", 2, 3600),))
    assert admitted(gate.decide(request("a"), T0))
    assert admitted(gate.decide(request("b"), T0 + 1000))
    capped = gate.decide(request("c"), T0 + 2000)
    [again] = capped.requests
    assert again.context[STATE] == HELD
    assert T0 + 3600_000 <= again.due_at <= T0 + 3602_000  # when the first slot frees
    [row] = capped.outcomes
    assert "cap '2 per target per 3600s'" in row.detail
    looked_again = gate.decide(again, T0 + 10_000)
    assert looked_again.outcomes == ()  # one row per action and cap
    assert admitted(gate.decide(again, T0 + 3_601_000 + 1000))
    assert admitted(gate.decide(request("d", pipeline="other"), T0))  # another target


def test_a_cap_per_factory_counts_every_pipeline_of_it_and_can_hand_over_instead():
    gate = admission(caps=(Cap("factory", 2, 600, then="manual", name="factory burst"),))
    assert admitted(gate.decide(request("a", pipeline="p1"), T0))
    assert admitted(gate.decide(request("b", pipeline="p2"), T0))
    assert "cap 'factory burst'" in handed_to_people(gate.decide(request("c", pipeline="p3"), T0))
    assert admitted(gate.decide(request("d", factory="adf-2"), T0))


# ---- the storm guard -------------------------------------------------------------------------


STORMS = (StormRule("factory", "target", 3, 300),)


def test_more_than_the_threshold_of_failing_pipelines_is_one_storm_with_its_chains_listed():
    gate = admission(storms=STORMS)
    results = [gate.decide(request(f"c{i}", pipeline=f"p{i}"), T0 + i) for i in range(6)]
    assert [admitted(r) for r in results] == [True, True, True, False, False, False]
    storm_rows = [o for r in results for o in o_rows(r) if o.state == STORM]
    assert len(storm_rows) == 1
    assert "storm on factory adf|adf-1" in storm_rows[0].detail
    assert all(f"c{i}" in storm_rows[0].detail for i in range(4))
    notices = [q for r in results for q in r.requests if q.action == "notify"]
    assert len(notices) == 1 and notices[0].step == "storm"  # people are told once
    assert notices[0].reason == storm_rows[0].detail
    # another factory is not in the storm
    assert admitted(gate.decide(request("x", factory="adf-2"), T0 + 10))


def o_rows(effects):
    return effects.outcomes


def test_the_same_pipeline_failing_again_is_not_a_storm():
    gate = admission(storms=STORMS)
    results = [gate.decide(request(f"c{i}"), T0 + i) for i in range(10)]  # one pipeline
    assert all(admitted(r) for r in results)


def test_a_storm_holds_until_calm_then_one_probe_then_a_bounded_release():
    policy = {"storms": STORMS, "recheck_s": 30.0, "probe_s": 120.0, "release_per_s": 2.0}
    gate = admission(**policy)
    for i in range(4):
        gate.decide(request(f"c{i}", pipeline=f"p{i}"), T0)
    held = [
        gate.decide(request(f"h{i}", pipeline=f"q{i}"), T0 + 1000).requests[0] for i in range(5)
    ]
    assert all(r.context[STATE] == HELD for r in held)
    # still stormy within the window: held again, without a new row
    again = gate.decide(held[0], T0 + 60_000)
    assert not admitted(again) and again.outcomes == ()
    # the window has passed: the next look goes first, as the probe, and the rest wait for it
    calm = T0 + 400_000
    assert admitted(gate.decide(held[0], calm))
    assert not admitted(gate.decide(held[1], calm + 1000))
    # the probe's chain did not fail again: the storm is over, the held ones go a few a second
    over = calm + 121_000
    results = [gate.decide(h, over) for h in held[1:]]
    assert [admitted(r) for r in results] == [True, True, False, False]
    assert [o.state for o in results[0].outcomes] == [STORM_OVER]


def test_a_probe_whose_chain_fails_again_keeps_the_storm_on():
    gate = admission(storms=STORMS, probe_s=120.0)
    for i in range(4):
        gate.decide(request(f"c{i}", pipeline=f"p{i}"), T0)
    held = gate.decide(request("h", pipeline="q"), T0 + 1000).requests[0]
    calm = T0 + 400_000
    assert admitted(gate.decide(held, calm))  # the probe
    gate.decide(replace(request("h", pipeline="q"), attempt=2), calm + 30_000)  # failed again
    assert not admitted(gate.decide(request("k", pipeline="r"), calm + 100_000))
    assert admitted(gate.decide(request("m", pipeline="s"), calm + 151_000))  # the next probe


def test_an_estate_wide_storm_and_one_by_error_type_across_factories():
    gate = admission(
        storms=(StormRule("error_type", "factory", 2, 300), StormRule("estate", "target", 50, 60))
    )
    results = [gate.decide(request(f"c{i}", factory=f"adf-{i}"), T0) for i in range(4)]
    assert [admitted(r) for r in results] == [True, True, False, False]
    [row] = [o for r in results for o in r.outcomes if o.state == STORM]
    assert row.state == STORM and "error_type GatewayTimeout" in row.detail


# ---- the tables in the rules file ------------------------------------------------------------


def test_the_tables_parse_and_refuse_what_they_do_not_know_naming_the_place():
    caps = parse_caps([{"per": "target", "limit": 3, "window_s": 3600}])
    assert caps == (Cap("target", 3, 3600),)
    storms = parse_storms([{"scope": "tag:region", "more_than": 20, "within_s": 300}])
    assert storms == (StormRule("tag:region", "target", 20, 300),)
    with pytest.raises(AdmissionError, match=r"caps\[0\].per.*caps\[1\]: unknown key"):
        parse_caps([{"per": "cluster", "limit": 1, "window_s": 1}, {"limt": 1}])
    with pytest.raises(AdmissionError, match=r"storms\[0\].more_than"):
        parse_storms([{"scope": "factory", "more_than": 0, "within_s": 60}])
