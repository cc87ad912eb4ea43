"""Token buckets: the burst, the refill, the wait, and what the platform reports."""

from __future__ import annotations

import pytest

from streams.policy.throttle import Rate, TokenBuckets


def test_a_full_bucket_allows_its_burst_then_names_the_wait():
    buckets = TokenBuckets(Rate(capacity=3, refill_per_s=2))
    assert [buckets.take("s", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("s", 100.0) == pytest.approx(0.5)
    assert buckets.take("s", 100.5) == 0.0  # one token came back in 0.5 s


def test_scopes_do_not_share_tokens():
    buckets = TokenBuckets(Rate(capacity=1, refill_per_s=1))
    assert buckets.take("sub-a", 0.0) == 0.0
    assert buckets.take("sub-a", 0.0) > 0
    assert buckets.take("sub-b", 0.0) == 0.0


def test_refill_stops_at_capacity():
    buckets = TokenBuckets(Rate(capacity=2, refill_per_s=10))
    buckets.take("s", 0.0)
    assert buckets.tokens("s", 1000.0) == 2


def test_what_the_platform_reports_lowers_the_bucket_and_never_raises_it():
    buckets = TokenBuckets(Rate(capacity=200, refill_per_s=10))
    buckets.observe("s", 1, now=0.0)
    assert buckets.take("s", 0.0) == 0.0
    assert buckets.take("s", 0.0) == pytest.approx(0.1)
    buckets.observe("s", 5000, now=0.0)
    assert buckets.tokens("s", 0.0) == 0.0


def test_a_reserve_is_left_for_others():
    buckets = TokenBuckets(Rate(capacity=3, refill_per_s=1), reserve=1)
    assert buckets.take("s", 0.0) == 0.0
    assert buckets.take("s", 0.0) == 0.0
    assert buckets.take("s", 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "reserve"), [(Rate(0, 1), 0), (Rate(1, 0), 0), (Rate(2, 1), 2)])
def test_nonsense_rates_are_refused(rate, reserve):
    with pytest.raises(ValueError):
        TokenBuckets(rate, reserve=reserve)
