from streams.policy.breaker import Breaker, Breakers, target_of
from streams.policy.model import ActionRequest, Alert, Classification
from streams.policy.steps import defer


def test_closed_breaker_lets_calls_through_and_counts_only_consecutive_failures():
    breaker = Breaker(threshold=3, cooldown_s=60)
    breaker.failed(0)
    breaker.failed(1)
    breaker.succeeded()
    breaker.failed(2)
    breaker.failed(3)
    assert not breaker.is_open and breaker.wait_s(4) == 0


def test_threshold_failures_open_it_for_the_cooldown():
    breaker = Breaker(threshold=3, cooldown_s=60)
    for t in range(3):
        breaker.failed(t)
    assert breaker.is_open
    assert breaker.wait_s(12) == 50  # opened at t=2, cool-down until 62


def test_after_the_cooldown_one_probe_goes_out_and_decides():
    breaker = Breaker(threshold=2, cooldown_s=10)
    breaker.failed(0)
    breaker.failed(0)
    assert breaker.wait_s(10) == 0  # the probe
    assert breaker.wait_s(10) > 0  # everyone else waits while it is out
    breaker.failed(11)  # the probe failed: open again at once
    assert breaker.wait_s(12) == 9
    assert breaker.wait_s(21) == 0  # the next probe
    breaker.succeeded()
    assert not breaker.is_open and breaker.wait_s(21) == 0 and breaker.wait_s(21) == 0


def test_breakers_are_per_target():
    breakers = Breakers(threshold=1, cooldown_s=30)
    breakers.for_target(target_of("adf", "f1")).failed(0)
    assert breakers.for_target(target_of("adf", "f1")).wait_s(1) > 0
    assert breakers.for_target(target_of("adf", "f2")).wait_s(1) == 0


def test_deferring_keeps_the_step_retry_budget():
    alert = Alert(alert_id="a", source="adf", kind="pipeline_run", scope="f1", run_id="r1")
    cls = Classification("GatewayTimeout", "low", "retry_pipeline", 3, (10,), "rule")
    request = ActionRequest(
        "id",
        "c",
        "k",
        "retry_pipeline",
        "execute",
        1,
        3,
        0,
        alert,
        cls,
        context={"step_retries": "2"},
    )
    effects = defer(request, wait_s=30, reason="circuit open", now_ms=1_000)
    (again,) = effects.requests
    assert again.due_at == 31_000 and again.context["step_retries"] == "2"
    assert effects.outcomes[0].state == "retrying" and "circuit open" in effects.outcomes[0].detail
