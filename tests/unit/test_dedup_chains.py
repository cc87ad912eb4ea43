"""Dedup and chain decisions, driven the way the agents drive them."""

from dataclasses import replace

import pytest

from streams.policy.chains import Chain, ChainPolicy, on_event
from streams.policy.dedup import DedupEntry, Verdict, decide, dedup_key
from streams.policy.model import (
    Alert,
    ChainEvent,
    ChainEventKind,
    ChainState,
    Classification,
    OutcomeState,
    Signal,
)
from streams.policy.steps import Effects, Status, StepConfig, StepReport, after_error, after_step

HOUR = 3_600_000
GATEWAY = Classification("GatewayTimeout", "low", "retry_pipeline", 3, (10, 30, 60), "adf-2108-504")
COLUMN = Classification("UserErrorColumnNameInvalid", "high", "manual", 0, (), "never automate")


def adf(run_id: str, **kw) -> Alert:
    return Alert(
        alert_id=f"a-{run_id}",
        source="adf",
        kind="pipeline_run",
        scope="f1",
        run_id=run_id,
        pipeline="p",
        **kw,
    )


@pytest.mark.parametrize(
    ("alert", "key"),
    [
        (adf("r1"), "adf|f1|r1"),
        (replace(adf("r1"), kind="activity_run", sub_id="act"), "adf|f1|r1"),
        (Alert("a", "databricks", "job_run", scope="ws", run_id="77"), "dbx|ws|77"),
        (
            Alert("a", "databricks", "task_run", scope="ws", run_id="77", sub_id="ingest"),
            "dbx|ws|77|ingest",
        ),
        (
            Alert(
                "a", "databricks", "job_run", scope="ws", run_id="77", details={"repair_id": "5"}
            ),
            "dbx|ws|77#5",
        ),
        (
            Alert("a", "databricks", "cluster", scope="ws", cluster_id="c-1", occurred_at=9),
            "dbx|ws|cluster|c-1|9",
        ),
    ],
)
def test_dedup_keys_name_one_failing_run(alert, key):
    assert dedup_key(alert) == key


def test_second_copy_of_a_failure_is_a_duplicate_of_the_same_chain():
    first = decide(None, adf("r1"), now_ms=0, horizon_ms=HOUR)
    assert first.verdict is Verdict.NEW_FAILURE and first.chain_id == "adf|f1|r1"
    again = decide(first.entry, adf("r1"), now_ms=5, horizon_ms=HOUR)
    assert again.verdict is Verdict.DUPLICATE and again.chain_id == "adf|f1|r1"
    assert again.entry.copies == 1 and "already" in again.reason


def test_an_expired_entry_counts_as_absent():
    entry = DedupEntry(chain_id="adf|f1|r1", failure_seen=True, expires_at=100)
    assert decide(entry, adf("r1"), now_ms=100, horizon_ms=HOUR).verdict is Verdict.NEW_FAILURE


def test_a_link_makes_the_rerun_join_the_chain():
    link = decide(
        None, adf("r2", signal=Signal.LINK.value, chain_id="adf|f1|r1"), now_ms=0, horizon_ms=HOUR
    )
    assert link.verdict is Verdict.LINKED
    failure = decide(link.entry, adf("r2"), now_ms=1, horizon_ms=HOUR)
    assert failure.verdict is Verdict.NEW_FAILURE and failure.chain_id == "adf|f1|r1"


def test_run_group_id_is_the_chain_hint():
    decision = decide(None, adf("r3", group_id="r1"), now_ms=0, horizon_ms=HOUR)
    assert decision.chain_id == "adf|f1|r1"


def failure(alert: Alert, cls: Classification = GATEWAY, chain_id: str = "adf|f1|r1") -> ChainEvent:
    return ChainEvent(
        kind="failure",
        chain_id=chain_id,
        dedup_key=dedup_key(alert),
        at=0,
        alert=alert,
        classification=cls,
    )


def executed(new_run: str, attempt: int) -> ChainEvent:
    return ChainEvent(
        kind=ChainEventKind.EXECUTED.value,
        chain_id="adf|f1|r1",
        dedup_key="k",
        at=0,
        alert=adf("r1"),
        classification=GATEWAY,
        attempt=attempt,
        new_run_id=new_run,
    )


POLICY = ChainPolicy()


def test_first_failure_schedules_the_first_backoff():
    step = on_event(None, failure(adf("r1")), now_ms=1_000, policy=POLICY)
    assert step.chain.state == ChainState.SCHEDULED.value and step.chain.attempts == 1
    assert step.schedule.due_at == 11_000 and step.schedule.attempt == 1
    assert [o.state for o in step.outcomes] == [OutcomeState.SCHEDULED.value]


def test_a_chain_spans_three_run_ids_and_max_retries_holds():
    chain = None
    runs = ["r1", "r2", "r3", "r4"]
    scheduled = []
    for attempt, run in enumerate(runs, start=1):
        now = attempt
        step = on_event(chain, failure(adf(run)), now_ms=now, policy=POLICY)
        chain = step.chain
        if step.schedule and step.schedule.action == "retry_pipeline":
            scheduled.append(step.schedule.attempt)
            chain = on_event(
                chain, executed(runs[attempt], attempt), now_ms=now, policy=POLICY
            ).chain
    assert scheduled == [1, 2, 3]
    assert chain.state == ChainState.GAVE_UP.value
    assert step.schedule.action == "manual" and "exhausted" in step.outcomes[-1].detail


def test_failure_for_another_run_while_in_flight_joins_the_chain():
    step = on_event(None, failure(adf("r1")), now_ms=0, policy=POLICY)
    joined = on_event(
        step.chain,
        failure(replace(adf("r1"), kind="activity_run", alert_id="b")),
        now_ms=1,
        policy=POLICY,
    )
    assert joined.schedule is None
    assert joined.outcomes[0].state == OutcomeState.DUPLICATE.value
    assert joined.chain.attempts == 1


def test_a_late_alert_for_an_already_counted_run_is_a_duplicate_after_resolution():
    chain = on_event(None, failure(adf("r1")), now_ms=0, policy=POLICY).chain
    chain = on_event(chain, executed("r2", 1), now_ms=1, policy=POLICY).chain
    chain = on_event(chain, failure(adf("r2")), now_ms=2, policy=POLICY).chain
    resolved = ChainEvent(
        kind="resolved", chain_id=chain.chain_id, dedup_key="k", at=3, alert=adf("r3")
    )
    chain = on_event(chain, resolved, now_ms=3, policy=POLICY).chain
    assert chain.state == ChainState.RESOLVED.value
    late = on_event(chain, failure(adf("r2")), now_ms=4, policy=POLICY)
    assert late.schedule is None and late.chain.state == ChainState.RESOLVED.value


def test_never_automate_goes_to_manual_with_the_reason():
    step = on_event(None, failure(adf("r1"), COLUMN), now_ms=0, policy=POLICY)
    assert step.chain.state == ChainState.MANUAL.value
    assert step.schedule.action == "manual" and step.outcomes[0].detail == "never automate"


def test_observe_mode_records_what_it_would_do_and_hands_over():
    step = on_event(None, failure(adf("r1")), now_ms=0, policy=ChainPolicy(mode="observe"))
    states = [o.state for o in step.outcomes]
    assert states == [OutcomeState.OBSERVED.value, OutcomeState.MANUAL.value]
    assert "would retry_pipeline in 10s" in step.outcomes[0].detail


def test_max_retries_cap_limits_any_rule():
    greedy = replace(GATEWAY, max_retries=50)
    step = on_event(
        None, failure(adf("r1"), greedy), now_ms=0, policy=ChainPolicy(max_retries_cap=2)
    )
    assert step.chain.max_attempts == 2


CONFIG = StepConfig(
    verify_poll_s=5, verify_max_polls=3, step_retry_limit=2, transient_backoff_s=(1, 2)
)


def first_request():
    return on_event(None, failure(adf("r1")), now_ms=0, policy=POLICY).schedule


def test_started_step_links_the_new_run_and_schedules_verification():
    effects = after_step(
        first_request(), StepReport(Status.STARTED, new_run_id="r2"), now_ms=100, config=CONFIG
    )
    (verify,) = effects.requests
    assert verify.step == "verify" and verify.due_at == 5_100 and verify.context["run_ref"] == "r2"
    assert effects.chain_events[0].kind == "executed" and effects.chain_events[0].new_run_id == "r2"
    (link,) = effects.alerts
    assert (
        link.alert.signal == "link"
        and link.alert.run_id == "r2"
        and link.alert.chain_id == "adf|f1|r1"
    )


def test_failed_verification_reenters_the_chain_with_the_new_run():
    started = after_step(
        first_request(), StepReport(Status.STARTED, new_run_id="r2"), now_ms=0, config=CONFIG
    )
    effects = after_step(
        started.requests[0], StepReport(Status.FAILED, detail="boom"), now_ms=1, config=CONFIG
    )
    (event,) = effects.chain_events
    assert (
        event.kind == "failure"
        and event.alert.run_id == "r2"
        and event.alert.chain_id == "adf|f1|r1"
    )


def test_pending_verification_polls_until_the_limit():
    request = after_step(
        first_request(), StepReport(Status.STARTED, new_run_id="r2"), now_ms=0, config=CONFIG
    ).requests[0]
    for _ in range(CONFIG.verify_max_polls - 1):
        effects = after_step(request, StepReport(Status.PENDING), now_ms=0, config=CONFIG)
        (request,) = effects.requests
    final = after_step(request, StepReport(Status.PENDING), now_ms=0, config=CONFIG)
    assert final.requests == () and final.chain_events[0].kind == "action_error"


def test_throttled_step_waits_retry_after_then_gives_up_after_the_limit():
    request = first_request()
    effects = after_error(
        request,
        kind="throttled",
        retryable=True,
        retry_after_s=42,
        detail="429",
        now_ms=0,
        config=CONFIG,
    )
    assert effects.requests[0].due_at == 42_000
    again = effects.requests[0]
    again = after_error(
        again,
        kind="transient",
        retryable=True,
        retry_after_s=None,
        detail="500",
        now_ms=0,
        config=CONFIG,
    ).requests[0]
    done = after_error(
        again,
        kind="transient",
        retryable=True,
        retry_after_s=None,
        detail="500",
        now_ms=0,
        config=CONFIG,
    )
    assert done.requests == () and done.chain_events[0].kind == "action_error"


def test_auth_error_goes_to_people_at_once():
    effects = after_error(
        first_request(),
        kind="auth",
        retryable=False,
        retry_after_s=None,
        detail="401 twice",
        now_ms=0,
        config=CONFIG,
    )
    assert isinstance(effects, Effects) and effects.chain_events[0].kind == "action_error"
    assert "auth" in effects.chain_events[0].detail


def test_a_late_executed_report_does_not_reopen_a_closed_chain():
    chain = on_event(None, failure(adf("r1"), COLUMN), now_ms=0, policy=POLICY).chain
    assert chain.state == ChainState.MANUAL.value
    late = on_event(chain, executed("r2", 1), now_ms=5, policy=POLICY)
    assert late.chain.state == ChainState.MANUAL.value and late.schedule is None


def test_an_executed_action_carries_its_estimated_cost():
    priced = StepConfig(action_cost_usd={"retry_pipeline": 0.25})
    effects = after_step(
        first_request(), StepReport(Status.STARTED, new_run_id="r2"), now_ms=0, config=priced
    )
    assert effects.outcomes[0].state == "executed" and effects.outcomes[0].cost_usd == 0.25


APPROVAL = ChainPolicy(mode="approval")


def decision(kind: str, who: str = "by alice") -> ChainEvent:
    return ChainEvent(
        kind=kind, chain_id="adf|f1|r1", dedup_key="", at=0, alert=adf("r1"), detail=who
    )


def test_approval_mode_holds_the_action_until_a_person_approves():
    step = on_event(None, failure(adf("r1")), now_ms=1_000, policy=APPROVAL)
    assert step.schedule is None and step.chain.state == "awaiting_approval"
    assert (
        step.outcomes[0].state == "awaiting_approval"
        and "pipemedic approve" in step.outcomes[0].detail
    )
    # more alerts for the run while it waits join the chain
    again = on_event(
        step.chain, failure(replace(adf("r1"), alert_id="b")), now_ms=2_000, policy=APPROVAL
    )
    assert again.schedule is None and again.outcomes[0].state == "duplicate"
    approved = on_event(step.chain, decision("approved"), now_ms=60_000, policy=APPROVAL)
    assert approved.chain.state == "scheduled" and approved.chain.pending is None
    assert approved.schedule.action == "retry_pipeline" and approved.schedule.due_at == 60_000
    assert approved.outcomes[0].detail == "approved by alice"
    # a second click changes nothing
    assert (
        on_event(approved.chain, decision("approved"), now_ms=61_000, policy=APPROVAL).schedule
        is None
    )


def test_a_rejected_action_hands_the_chain_to_people():
    waiting = on_event(None, failure(adf("r1")), now_ms=0, policy=APPROVAL).chain
    rejected = on_event(
        waiting, decision("rejected", "by bob: prod freeze"), now_ms=5, policy=APPROVAL
    )
    assert rejected.chain.state == "manual" and rejected.schedule.action == "manual"
    assert "rejected by bob: prod freeze" in rejected.outcomes[0].detail


def test_a_waiting_chain_survives_the_table_round_trip():
    waiting = on_event(None, failure(adf("r1")), now_ms=0, policy=APPROVAL).chain
    assert Chain.from_dict(waiting.to_dict()) == waiting


def test_paging_people_does_not_touch_the_chain():
    page = on_event(None, failure(adf("r1"), COLUMN), now_ms=0, policy=POLICY).schedule
    assert page.action == "manual"
    assert (
        after_step(page, StepReport(Status.SUCCEEDED, detail="paged"), now_ms=1, config=CONFIG)
        == Effects()
    )


def test_without_a_paging_hook_a_manual_close_queues_no_action():
    quiet = ChainPolicy(mode="observe", page_hook=False)
    step = on_event(None, failure(adf("r1")), now_ms=0, policy=quiet)
    assert step.chain.state == ChainState.MANUAL.value and step.schedule is None
    assert [o.state for o in step.outcomes] == [
        OutcomeState.OBSERVED.value,
        OutcomeState.MANUAL.value,
    ]
    paged = on_event(None, failure(adf("r1")), now_ms=0, policy=ChainPolicy(mode="observe"))
    assert paged.schedule is not None and paged.schedule.action == "manual"


# ---- successes leave a trace only where a chain waits for them (issue 18: phantom chains) ----


def test_a_success_of_a_run_nobody_alerted_on_leaves_no_trace():
    decision = decide(None, adf("r9", signal=Signal.SUCCESS.value), now_ms=0, horizon_ms=HOUR)
    assert decision.verdict is Verdict.UNREMARKABLE


def test_a_redelivered_success_is_not_called_a_duplicate():
    failed = decide(None, adf("r1"), now_ms=0, horizon_ms=HOUR)
    first = decide(failed.entry, adf("r1", signal=Signal.SUCCESS.value), now_ms=1, horizon_ms=HOUR)
    assert first.verdict is Verdict.SUCCESS
    again = decide(first.entry, adf("r1", signal=Signal.SUCCESS.value), now_ms=2, horizon_ms=HOUR)
    assert again.verdict is Verdict.UNREMARKABLE


def test_a_success_of_a_rerun_in_someone_elses_group_still_reaches_that_chain():
    rerun = adf("r2", signal=Signal.SUCCESS.value, group_id="r1")
    decision = decide(None, rerun, now_ms=0, horizon_ms=HOUR)
    assert decision.verdict is Verdict.SUCCESS and decision.chain_id == "adf|f1|r1"


def test_an_adf_alert_without_a_run_is_named_by_its_alert_instance():
    metric = Alert(alert_id="/alerts/42", source="adf", kind="pipeline_run", scope="f1")
    assert dedup_key(metric) == "adf|f1|alert:/alerts/42"
    assert dedup_key(replace(metric, alert_id="/alerts/43")) != dedup_key(metric)
