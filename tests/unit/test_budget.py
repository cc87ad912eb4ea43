"""The daily cost cap: decisions are pure, the clock is a parameter."""

from __future__ import annotations

from streams.policy.budget import DAY_MS, Budget

NOON = 20_000 * DAY_MS + DAY_MS // 2


def test_no_cap_allows_everything():
    budget = Budget(cap_usd=0)
    budget.charge(1_000.0, NOON)
    assert budget.allows(1_000.0, NOON)


def test_charges_count_against_the_cap_and_refunds_give_back():
    budget = Budget(cap_usd=1.0)
    assert budget.allows(0.5, NOON)
    budget.charge(0.5, NOON)
    budget.charge(0.5, NOON + 1)
    assert not budget.allows(0.25, NOON + 2)
    assert budget.allows(0.0, NOON + 2)  # free actions (paging people) are never held
    budget.refund(0.5, NOON + 1)
    assert budget.allows(0.5, NOON + 2) and not budget.allows(0.75, NOON + 2)
    assert "0.50 of $1.00" in budget.why_not(0.75, NOON + 2)


def test_a_new_utc_day_starts_from_nothing():
    budget = Budget(cap_usd=1.0)
    budget.charge(1.0, NOON)
    assert not budget.allows(0.1, NOON)
    assert budget.allows(1.0, NOON + DAY_MS)


def test_a_look_at_the_trail_replaces_old_charges_but_keeps_recent_ones():
    budget = Budget(cap_usd=10.0, lag_ms=10_000)
    budget.charge(2.0, NOON)  # long recorded by the time we look
    budget.charge(3.0, NOON + 55_000)  # may not be in the trail yet
    budget.looked(6.0, looked_at_ms=NOON + 60_000)  # 6.0: our 2.0 plus another worker's 4.0
    assert budget.spent_usd(NOON + 60_001) == 9.0  # 6.0 recorded + the recent 3.0
    assert not budget.allows(1.5, NOON + 60_001)


def test_a_look_from_yesterday_changes_nothing_today():
    budget = Budget(cap_usd=10.0)
    budget.charge(1.0, NOON + DAY_MS)
    budget.looked(9.0, looked_at_ms=NOON)
    assert budget.spent_usd(NOON + DAY_MS) == 1.0
