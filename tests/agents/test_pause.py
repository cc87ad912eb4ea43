"""The kill switch without a broker: which scopes a pause holds, what a held action does,
and the audit rows. The follower of the control topic is tested on the real broker."""

from __future__ import annotations

from dataclasses import replace

from agents.execute import StepRunner
from agents.platforms import Platforms
from streams.estate import Estate
from streams.policy.breaker import Breakers
from streams.policy.model import Alert, OutcomeState, Pause, Step
from streams.policy.notices import SIDE_STATES
from streams.policy.pauses import CONTROL_STATES, Pauses, control_row, covers
from streams.policy.steps import StepConfig
from tests.agents.helpers import fake_topology
from tests.agents.test_execute import STARTED, Procedure, adf_request


def pause(scope="*", paused=True, at=1_000, by="ana", reason="ARM incident"):
    return Pause(scope=scope, paused=paused, by=by, reason=reason, at=at)


def on(scope: str) -> Alert:
    return Alert("a", "adf", "pipeline_run", scope=scope)


def test_a_pause_covers_everything_or_its_target_pattern():
    assert covers(pause("*"), on("adf-sales-prod"))
    assert covers(pause("ADF-SALES-*"), on("adf-sales-prod"))
    assert not covers(pause("adf-hr-*"), on("adf-sales-prod"))


def test_resume_lifts_only_its_own_scope():
    pauses = Pauses()
    pauses.apply(pause("*", at=1))
    pauses.apply(pause("adf-sales-*", at=2))
    pauses.apply(pause("adf-sales-*", paused=False, at=3))
    assert pauses.covering(on("adf-sales-prod")).scope == "*"  # the wider pause still holds
    pauses.apply(pause("*", paused=False, at=4))
    assert pauses.covering(on("adf-sales-prod")) is None and pauses.active == ()


def runner(pauses: Pauses, procedure: Procedure, action="retry_pipeline"):
    topo = fake_topology()
    platforms = Platforms(estate=Estate(), adf=None, databricks=None, playbooks=None)
    run = StepRunner(
        topo,
        platforms,
        action,
        StepConfig(),
        Breakers(3, 60.0),
        procedure=procedure,
        pauses=pauses,
    )
    return run, topo.clock


async def test_a_paused_action_waits_without_a_call_and_goes_once_resumed():
    pauses, procedure = Pauses(), Procedure(STARTED)
    run, clock = runner(pauses, procedure)
    pauses.apply(pause("adf-sales-*"))
    first = await run.run(adf_request())
    assert procedure.calls == 0
    (again,) = first.requests
    assert again.due_at == clock.now_ms() + 5_000 and again.attempt == adf_request().attempt
    (row,) = first.outcomes
    assert row.state == OutcomeState.RETRYING.value
    assert row.detail.startswith("paused (scope adf-sales-*) by ana: ARM incident")
    # rechecked while the same pause holds: deferred again, no new row
    second = await run.run(again)
    assert procedure.calls == 0 and second.outcomes == () and len(second.requests) == 1
    pauses.apply(pause("adf-sales-*", paused=False, at=2_000))
    await run.run(second.requests[0])
    assert procedure.calls == 1


async def test_verification_and_paging_people_are_never_paused():
    pauses = Pauses()
    pauses.apply(pause("*"))
    verify, _ = runner(pauses, Procedure(STARTED))
    await verify.run(replace(adf_request(), step=Step.VERIFY.value))
    assert verify.procedure.calls == 1
    page, _ = runner(pauses, Procedure(STARTED), action="manual")
    await page.run(replace(adf_request(), action="manual"))
    assert page.procedure.calls == 1


def test_pause_and_resume_are_audit_rows_kept_out_of_the_chains_view():
    assert CONTROL_STATES <= SIDE_STATES
    paused, resumed = control_row(pause("adf-*")), control_row(pause("adf-*", paused=False))
    assert (paused.state, resumed.state) == ("paused", "resumed")
    assert paused.detail == "paused scope adf-* by ana: ARM incident"
    assert paused.chain_id == "" and paused.event_id != resumed.event_id
