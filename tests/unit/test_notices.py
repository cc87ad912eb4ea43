"""Which chain transitions tell people, whom, and what a delivery leaves behind."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streams.policy import routing
from streams.policy.chains import Chain
from streams.policy.model import ActionRequest, Alert, Classification, Outcome
from streams.policy.notices import (
    Delivery,
    NotifyConfig,
    Route,
    Told,
    Transition,
    delivery_row,
    due_targets,
    notices_for,
    retry_notice,
    targets_for,
)

NOW = 1_700_000_000_000
ALERT = Alert(alert_id="a1", source="adf", kind="pipeline_run", scope="adf-sales-prod", run_id="r1")
KIND = Classification("UserErrorSourceBlobNotExists", "high", "manual", 0, (), "never automate")
CHAIN = Chain("c1", "manual", attempts=1, max_attempts=3, action="manual", history=("x",))


def row(state: str, detail: str = "why", chain_id: str = "c1") -> Outcome:
    return Outcome(
        event_id="e", at=NOW, chain_id=chain_id, dedup_key="k", state=state, detail=detail
    )


@pytest.mark.parametrize(
    ("state", "transition"),
    [
        ("manual", "handed_to_people"),
        ("gave_up", "handed_to_people"),
        ("awaiting_approval", "awaiting_approval"),
        ("resolved", "resolved"),
        ("expired", "approval_expired"),
    ],
)
def test_a_transition_people_hear_about_becomes_one_notice(state, transition):
    (notice,) = notices_for(CHAIN, ALERT, KIND, [row(state, "3 attempts exhausted")])
    assert notice.action == routing.NOTIFY == "notify"
    assert (notice.step, notice.chain_id, notice.reason) == (
        transition,
        "c1",
        "3 attempts exhausted",
    )
    assert notice.history == ("x",)
    assert routing.route(notice, now_ms=NOW, tiers=(1, 5))[0] == routing.NOTIFICATIONS


@pytest.mark.parametrize(
    "state", ["received", "duplicate", "scheduled", "observed", "executed", "failed", "retrying"]
)
def test_other_transitions_tell_no_one(state):
    assert notices_for(CHAIN, ALERT, KIND, [row(state)]) == ()


def test_a_replayed_failure_pages_nobody():
    replayed = replace(ALERT, details={"replayed_from": "cap-1"})
    assert notices_for(CHAIN, replayed, KIND, [row("manual")]) == ()


def notice(transition: str = "handed_to_people", **context: str) -> ActionRequest:
    (made,) = notices_for(CHAIN, ALERT, KIND, [row("manual")])
    return replace(made, step=transition, context={**made.context, **context})


ROUTES = (
    Route(targets=("pd",), scope="adf-sales-*", risk="high", transition="handed_to_people"),
    Route(targets=("teams",), source="databricks"),
    Route(targets=("slack", "hook")),
)


@pytest.mark.parametrize(
    ("changes", "transition", "expected"),
    [
        ({}, "handed_to_people", ("pd",)),  # first match wins
        ({}, "awaiting_approval", ("slack", "hook")),  # transition differs: next row
        ({"risk": "low"}, "handed_to_people", ("slack", "hook")),
        ({"scope": "adf-hr-prod"}, "handed_to_people", ("slack", "hook")),
        ({"source": "databricks", "scope": "123"}, "handed_to_people", ("teams",)),
    ],
)
def test_the_routing_table_is_first_match(changes, transition, expected):
    alert = replace(ALERT, **{k: v for k, v in changes.items() if k != "risk"})
    kind = replace(KIND, risk=changes.get("risk", KIND.risk))
    request = replace(notice(transition), alert=alert, classification=kind)
    assert targets_for(request, ROUTES) == expected


def test_no_route_no_target():
    assert targets_for(notice(), (Route(targets=("x",), source="databricks"),)) == ()


def test_once_per_chain_then_only_updates_where_people_were_told():
    told = Told()
    assert due_targets(notice(), told, ROUTES) == ("pd",)
    told = told.with_delivery("pd", "handed_to_people", {"dedup_key": "c1"}, NOW)
    assert due_targets(notice(), told, ROUTES) == ()  # a redelivered notice tells no one
    assert due_targets(notice("resolved"), told, ROUTES) == ()  # routed elsewhere...
    everywhere = (Route(targets=("pd", "slack")),)
    assert due_targets(notice("resolved"), told, everywhere) == ("pd",)  # ...only the told
    assert due_targets(notice("resolved"), Told(), everywhere) == ()  # no hand-off, no news
    assert told.ref("pd") == {"dedup_key": "c1"}
    assert Told.from_dict(told.to_dict()) == told


def test_a_retry_names_its_one_target():
    told = Told().with_delivery("slack", "handed_to_people", {}, NOW)
    again = notice(target="hook", tries="1")
    assert due_targets(again, told, (Route(targets=("slack", "hook")),)) == ("hook",)


def test_a_retry_waits_the_backoff_or_what_the_channel_asked_then_gives_up():
    config = NotifyConfig(retry_limit=3, backoff_s=(1.0, 2.0))
    first = retry_notice(notice(), "pd", retry_after_s=None, now_ms=NOW, config=config)
    assert first is not None
    assert (first.due_at, first.context["target"], first.context["tries"]) == (
        NOW + 1000,
        "pd",
        "1",
    )
    second = retry_notice(first, "pd", retry_after_s=30.0, now_ms=NOW, config=config)
    assert second is not None and second.due_at == NOW + 30_000
    assert retry_notice(second, "pd", retry_after_s=None, now_ms=NOW, config=config) is None


def test_a_delivery_row_says_channel_transition_and_state_and_collapses_on_replay():
    made = delivery_row(notice(), "pd", "pagerduty", Delivery.NOTIFIED, "delivered", now_ms=NOW)
    again = delivery_row(
        notice(), "pd", "pagerduty", Delivery.NOTIFIED, "delivered", now_ms=NOW + 5
    )
    assert (made.state, made.action, made.platform_status) == (
        "notified",
        "notify:pd",
        "handed_to_people",
    )
    assert made.event_id == again.event_id and made.chain_id == "c1"
    failed = delivery_row(notice(), "pd", "pagerduty", Delivery.NOTIFY_FAILED, "x", now_ms=NOW)
    assert failed.event_id != made.event_id


def test_told_transitions_are_the_documented_ones():
    assert {t.value for t in Transition} == {
        "handed_to_people",
        "awaiting_approval",
        "approval_expired",
        "resolved",
        "storm",  # the storm guard's one message per storm (streams/policy/admission.py)
    }


def test_an_approval_expires_ttl_after_the_chain_began_to_wait():
    from streams.policy.notices import approval_expires_s, awaiting_approvals, expired_row

    asked = replace(notice("awaiting_approval"), due_at=NOW)
    assert approval_expires_s(asked, 60) == NOW // 1000 + 60
    chains = [
        ("c1", {"state": "awaiting_approval", "updated_at": NOW, "pending": asked.to_dict()}),
        ("c2", {"state": "scheduled", "updated_at": NOW, "pending": None}),
        ("c3", None),
    ]
    ((chain_id, (expires_ms, pending)),) = awaiting_approvals(chains, 60).items()
    assert (chain_id, expires_ms, pending) == ("c1", (NOW // 1000 + 60) * 1000, asked)
    row = expired_row(asked, 60, now_ms=NOW)
    assert (row.state, row.detail) == ("expired", "expired: no decision within 60s")


@pytest.mark.parametrize(
    ("chain", "undecided"),
    [
        ({"state": "awaiting_approval", "attempts": 1}, True),
        ({"state": "awaiting_approval", "attempts": 2}, False),  # a later attempt asks anew
        ({"state": "scheduled", "attempts": 1}, False),  # approved meanwhile
        (None, False),
    ],
)
def test_only_an_undecided_approval_expires(chain, undecided):
    from streams.policy.notices import still_undecided

    assert still_undecided(chain, notice("awaiting_approval")) is undecided


def test_an_expiry_closing_the_chain_is_told_as_approval_expired():
    closing = row("manual", "rejected expired: no decision within 60s")
    (made,) = notices_for(CHAIN, ALERT, KIND, [closing])
    assert made.step == "approval_expired"
