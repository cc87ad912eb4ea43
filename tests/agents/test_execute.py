"""The executor without a broker: names checked before any call, the circuit breaker, the
daily cost cap's charge and refund, and our own rate limit. Time is a manual clock; the
procedure stands in for the platform calls (the adapters have tests of their own)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from agents.execute import StepRunner
from agents.platforms import Platforms
from streams.adapters.errors import ErrorKind, HeldBack, PlatformError
from streams.estate import Estate
from streams.policy.breaker import Breakers
from streams.policy.model import ChainEventKind
from streams.policy.steps import Status, StepConfig, StepReport
from tests.agents.helpers import fake_topology, request

RUN = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"


class Procedure:
    """Answers each call with the next of ``answers`` (a report, or an error to raise)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, request, platforms, now_ms):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def runner(procedure, *, threshold=3, cooldown_s=60.0):
    topo = fake_topology()
    config = StepConfig()
    platforms = Platforms(estate=Estate(), adf=None, databricks=None, playbooks=None)
    run = StepRunner(
        topo,
        platforms,
        "retry_pipeline",
        config,
        Breakers(threshold, cooldown_s),
        procedure=procedure,
    )
    return run, topo.clock, None


def adf_request(chain: str = "c1", **alert_fields):
    base = request(chain, due_at=0)
    alert = replace(base.alert, scope="adf-sales-prod", pipeline="Load_Orders", run_id=RUN)
    return replace(base, alert=replace(alert, **alert_fields))


STARTED = StepReport(Status.STARTED, new_run_id="7a1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b")
OUTAGE = PlatformError(ErrorKind.TRANSIENT, "HTTP 503")


@pytest.mark.parametrize(
    "fields",
    [
        {"pipeline": "../../providers/Microsoft.Authorization/roleAssignments/x"},
        {"pipeline": "Load.Orders"},
        {"run_id": "not-a-guid"},
        {"scope": "a/b"},
        {"source": "databricks", "scope": "4417362907193652", "cluster_id": "../x"},
        {"source": "databricks", "scope": "ws-1"},
        {"source": "databricks", "scope": "4417362907193652", "run_id": "12 OR 1=1"},
    ],
)
async def test_a_name_that_cannot_exist_is_refused_without_a_call(fields):
    procedure = Procedure(STARTED)
    run, _, _ = runner(procedure)
    effects = await run.run(adf_request(**fields))
    assert procedure.calls == 0
    [event] = effects.chain_events
    assert event.kind == ChainEventKind.ACTION_ERROR.value
    assert event.detail.startswith("invalid_name: ") and "cannot exist" in event.detail
    assert not effects.requests


async def test_valid_names_go_through():
    procedure = Procedure(STARTED)
    run, _, _ = runner(procedure)
    await run.run(adf_request())
    await run.run(adf_request(source="databricks", scope="4417362907193652", run_id="455644833"))
    assert procedure.calls == 2


async def test_the_breaker_opens_after_repeated_outages_and_defers_without_calling():
    procedure = Procedure(OUTAGE)
    run, clock, _ = runner(procedure, threshold=3, cooldown_s=60)
    for i in range(3):
        effects = await run.run(adf_request(f"c{i}"))
        assert effects.requests[0].context["step_retries"] == "1"  # retried, budget spent
    deferred = await run.run(adf_request("c9"))
    assert procedure.calls == 3  # the open breaker did not call
    [again] = deferred.requests
    assert "step_retries" not in again.context  # a deferral spends no retry
    assert again.due_at == clock.now_ms() + 60_000
    assert "circuit open" in deferred.outcomes[0].detail


async def test_after_the_cooldown_one_probe_goes_out_and_a_success_closes_the_breaker():
    procedure = Procedure(OUTAGE, OUTAGE, STARTED)
    run, clock, _ = runner(procedure, threshold=2, cooldown_s=30)
    await run.run(adf_request("a"))
    await run.run(adf_request("b"))
    await clock.advance(29.9)
    await run.run(adf_request("c"))
    assert procedure.calls == 2  # still open
    await clock.advance(0.1)
    await run.run(adf_request("d"))  # the probe
    assert procedure.calls == 3
    await run.run(adf_request("e"))
    assert procedure.calls == 4  # closed again


async def test_a_call_our_rate_limit_held_back_is_deferred_and_never_opens_the_breaker():
    procedure = Procedure(HeldBack("ADF createRun", 2.5))
    run, clock, _ = runner(procedure, threshold=1)
    for i in range(3):
        effects = await run.run(adf_request(f"c{i}"))
        [again] = effects.requests
        assert again.due_at >= clock.now_ms() + 2500
        assert "step_retries" not in again.context  # waiting on ourselves spends no retry
    assert procedure.calls == 3  # the breaker stayed closed


async def test_steps_held_back_together_come_back_spread_out_and_never_give_up():
    procedure = Procedure(HeldBack("ADF queryPipelineRuns", 0.0))
    run, clock, _ = runner(procedure)
    dues, rows = [], 0
    for i in range(20):
        request = adf_request(f"c{i}")
        waits = []
        for _ in range(8):  # more holds than the step retry limit allows failures
            effects = await run.run(request)
            assert not effects.chain_events  # never handed to people for our own limit
            rows += len(effects.outcomes)
            [request] = effects.requests
            waits.append(request.due_at - clock.now_ms())
        assert waits[0] < waits[2] < waits[4] <= 32_000  # ever less often, up to a bound
        dues.append(waits[0])
    assert min(dues) >= 1000 and len(set(dues)) > 10
    assert rows == 20  # one row per held step, not one per hold


async def test_steps_are_counted_by_action_and_result():
    def steps(result):
        labels = {"action": "retry_pipeline", "step": "execute", "result": result}
        return REGISTRY.get_sample_value("pipemedic_steps_total", labels) or 0.0

    before = {r: steps(r) for r in ("started", "error:transient", "invalid_name")}
    run, _, _ = runner(Procedure(STARTED, OUTAGE))
    await run.run(adf_request("a"))
    await run.run(adf_request("b"))
    await run.run(adf_request("c", run_id="nope"))
    assert {r: steps(r) - before[r] for r in before} == {
        "started": 1,
        "error:transient": 1,
        "invalid_name": 1,
    }
