"""A replay's mark: header → alert → observe-only chain that pages nobody (when the setting
is on), and the ordinary decision when it is off."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents.ingest import _ingest_one
from agents.outbox import Outbox
from streams.codecs import decode_items
from streams.policy.chains import ChainPolicy, on_event
from streams.policy.dedup import dedup_key
from streams.policy.model import Alert, ChainEvent, Classification, OutcomeState
from streams.policy.replays import (
    REPLAY_HEADER,
    REPLAYED_DETAIL,
    is_replayed,
    marked,
    replay_mark,
    with_mark,
)
from streams.policy.rules import DEFAULT_RULES, DEFAULT_SCHEDULES, Classifier
from streams.policy.scope import EstateScope
from tests.agents.helpers import fake_topology
from tests.integration.chain_scenarios import gateway_alert, guid

GATEWAY = Classification("GatewayTimeout", "low", "retry_pipeline", 3, (10, 30, 60), "rule")
ALERT = Alert("a-1", "adf", "pipeline_run", scope="f1", run_id="r1", pipeline="p")


def failure(alert: Alert) -> ChainEvent:
    return ChainEvent(
        kind="failure",
        chain_id="adf|f1|r1",
        dedup_key=dedup_key(alert),
        at=0,
        alert=alert,
        classification=GATEWAY,
    )


def test_the_header_names_the_capture_and_a_new_mark_replaces_an_old_one() -> None:
    assert replay_mark([("other", b"x"), (REPLAY_HEADER, b"cap-1")]) == "cap-1"
    assert replay_mark({REPLAY_HEADER: b"cap-2"}) == "cap-2"
    assert replay_mark(None) == replay_mark([]) == ""
    headers = with_mark([("trace", b"t"), (REPLAY_HEADER, b"old")], "new")
    assert headers == (("trace", b"t"), (REPLAY_HEADER, b"new"))
    assert is_replayed(marked(ALERT, "cap-1")) and not is_replayed(marked(ALERT, ""))
    assert dedup_key(marked(ALERT, "cap-1")) == dedup_key(ALERT)  # same failure, same key


def test_a_replayed_failure_is_only_observed_and_pages_nobody() -> None:
    policy = ChainPolicy(mode="automatic", replayed_observe_only=True, page_hook=True)
    step = on_event(None, failure(marked(ALERT, "cap-1")), now_ms=0, policy=policy)
    assert [o.state for o in step.outcomes] == [
        OutcomeState.OBSERVED.value,
        OutcomeState.MANUAL.value,
    ]
    assert step.outcomes[0].detail.startswith("replayed, observe-only: would retry_pipeline")
    assert step.schedule is None  # no action, not even the page


@pytest.mark.parametrize(
    ("replayed_observe_only", "alert"),
    [(False, marked(ALERT, "cap-1")), (True, ALERT)],
    ids=["setting off", "not replayed"],
)
def test_otherwise_the_chain_acts_as_its_mode_says(replayed_observe_only: bool, alert: Alert):
    policy = ChainPolicy(mode="automatic", replayed_observe_only=replayed_observe_only)
    step = on_event(None, failure(alert), now_ms=0, policy=policy)
    assert step.schedule is not None and step.schedule.action == "retry_pipeline"


async def test_ingest_copies_the_header_into_the_alert() -> None:
    topo = fake_topology()
    outbox = Outbox(topo)
    message = SimpleNamespace(
        topic="alerts-raw",
        partition=0,
        offset=7,
        value=gateway_alert("Load", guid("replayed")),
        headers=[(REPLAY_HEADER, b"cap-9")],
    )
    scope = EstateScope.of(factories=["adf-sales-prod"], workspaces=[])
    await _ingest_one(topo, Classifier(DEFAULT_RULES, DEFAULT_SCHEDULES), scope, outbox, message)
    await outbox.flush()
    [record] = [
        i for _, body, _ in topo.classified.sent for i in decode_items("classified_alert", body)
    ]
    assert record["alert"]["details"][REPLAYED_DETAIL] == "cap-9"
