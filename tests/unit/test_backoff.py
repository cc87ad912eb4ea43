import pytest

from streams.policy import backoff, routing
from streams.policy.model import ActionRequest, Alert, Classification


@pytest.mark.parametrize(
    ("schedules", "extra", "tiers"),
    [
        ([(10, 30, 60), (5, 15, 30)], (), (5, 10, 15, 30, 60)),
        ([(30, 60, 120, 300, 600)], (0.4, 2.5), (1, 3, 30, 60, 120, 300, 600)),
        ([], (), ()),
    ],
)
def test_tiers_are_the_distinct_whole_second_delays(schedules, extra, tiers):
    assert backoff.derive_tiers(schedules, extra) == tiers


@pytest.mark.parametrize(
    ("schedule", "attempt", "delay"),
    [((10, 30, 60), 1, 10), ((10, 30, 60), 3, 60), ((10, 30, 60), 7, 60), ((), 1, 0)],
)
def test_delay_for_attempt_repeats_the_last_step(schedule, attempt, delay):
    assert backoff.delay_for_attempt(schedule, attempt) == delay


def test_retry_after_overrides_the_schedule():
    assert backoff.choose_delay((10, 30), 1, 47.0) == 47.0
    assert backoff.choose_delay((10, 30), 2, None) == 30


@pytest.mark.parametrize(
    ("remaining_s", "tier"),
    [(0.5, 5), (5, 5), (5.001, 30), (30, 30), (31, 120), (119, 120), (500, 120)],
)
def test_hop_rounds_up_to_a_tier_and_hops_long_waits(remaining_s, tier):
    tiers = (5, 30, 120)
    hop = backoff.plan_hop(tiers, 1_000, 1_000 + int(remaining_s * 1000))
    assert hop.tier_s == tier
    assert hop.hop_due_at == 1_000 + tier * 1000


def test_a_due_record_needs_no_hop():
    assert backoff.plan_hop((5,), 10_000, 10_000) is None
    assert backoff.plan_hop((5,), 10_000, 9_000) is None


def _request(due_at: int) -> ActionRequest:
    alert = Alert(alert_id="a", source="adf", kind="pipeline_run", scope="f", run_id="r")
    cls = Classification("GatewayTimeout", "low", "retry_pipeline", 3, (10, 30, 60), "rule")
    return ActionRequest(
        "id", "chain", "key", "retry_pipeline", "execute", 1, 3, due_at, alert, cls
    )


def test_route_sends_due_requests_to_their_action_topic():
    topic, routed = routing.route(_request(1_000), now_ms=1_000, tiers=(10, 30))
    assert topic == "action-retry-pipeline"
    assert routed.tier == "" and routed.hop_due_at == 0


def test_route_sends_waiting_requests_to_the_covering_tier():
    topic, routed = routing.route(_request(1_000 + 25_000), now_ms=1_000, tiers=(10, 30))
    assert topic == "delay-30s"
    assert routed.tier == "30s" and routed.hop_due_at == 31_000


def test_every_action_has_a_topic_and_topics_are_unique():
    topics = routing.all_topics((10, 30))
    assert len(topics) == len(set(topics))
    assert "action-manual" in topics and "delay-10s" in topics and "dead-letter" in topics
