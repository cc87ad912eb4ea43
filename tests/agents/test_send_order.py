"""Crash consistency, stage by stage: the message that carries the next step is acknowledged
by the broker before any outcome row says the step happened, before a table says so, and
before the input is acknowledged (so before its offset can be committed).

Topics here hold their acknowledgements until the test gives them (``RecordingTopic.hold``),
which is the instant a ``kill -9`` can hit: the producer has the message, the broker has not
confirmed it. Whatever a stage has claimed by then is what a crash would leave behind.
"""

from __future__ import annotations

import asyncio

import pytest

from agents.chains import Chains
from agents.common import dead_letter
from agents.dedup import Dedup
from agents.delay import TierHolds
from agents.outbox import Outbox, SharedOutbox
from streams.policy.chains import ChainPolicy
from streams.policy.model import ChainEvent, ChainEventKind, Outcome
from streams.policy.steps import Effects
from tests.agents.helpers import drive, fake_topology, request, settle
from tests.agents.test_delay import AckLog, event, items
from tests.agents.test_stages import (
    CountingDict,
    chain_failure,
    failure,
    outcome_states,
    sent_items,
)

HOUR_MS = 3_600_000


def executed_event() -> ChainEvent:
    return ChainEvent(
        kind=ChainEventKind.EXECUTED.value,
        chain_id="c1",
        dedup_key="k",
        at=1,
        alert=failure("r1").alert,
    )


def row(chain_id: str) -> Outcome:
    return Outcome(event_id=chain_id, at=1, chain_id=chain_id, dedup_key=chain_id, state="x")


async def test_outcome_rows_wait_until_the_broker_has_every_next_step():
    topo = fake_topology()
    topo.chain_events.hold = True
    outbox = Outbox(topo)
    outbox.add_chain_event(executed_event())
    outbox.add_outcomes([row("c1")])
    flushing = asyncio.ensure_future(outbox.flush())
    await settle()
    assert len(topo.chain_events.sent) == 1 and topo.outcomes.sent == []
    assert not flushing.done()
    topo.chain_events.acknowledge()
    await settle()
    assert len(topo.outcomes.sent) == 1 and flushing.done()


async def test_a_next_step_the_broker_refused_is_sent_again_alone_and_no_row_goes_before_it():
    topo = fake_topology(tiers=(5,))
    topo.chain_events.hold = True
    outbox = Outbox(topo, retry_delays_s=(0.5,))
    now = topo.clock.now_ms()
    outbox.add_request(request("waits", now + 3000), now=now)  # to the 5 s tier, acknowledged
    outbox.add_chain_event(executed_event())
    outbox.add_outcomes([row("c1")])
    flushing = asyncio.ensure_future(outbox.flush())
    await settle()
    topo.chain_events.acknowledge(ConnectionError("not leader"))
    topo.chain_events.hold = False
    await drive(topo.clock, flushing)
    assert len(topo.chain_events.sent) == 2  # refused, then sent again
    assert len(topo.delays[5].sent) == 1  # acknowledged the first time: not sent twice
    assert len(topo.outcomes.sent) == 1


async def test_dedup_writes_its_table_and_rows_only_once_the_chain_event_is_acknowledged():
    topo, table = fake_topology(), CountingDict()
    topo.chain_events.hold = True
    dedup = Dedup(topo, table, horizon_ms=HOUR_MS)
    handling = asyncio.ensure_future(dedup(0, [failure("r1"), failure("r1")]))
    await settle()
    assert len(topo.chain_events.sent) == 1
    assert table.writes == 0 and topo.outcomes.sent == [] and not handling.done()
    topo.chain_events.acknowledge()
    await handling
    assert table.writes == 1 and outcome_states(topo)  # the duplicate's row


async def test_a_chain_is_recorded_scheduled_only_once_its_retry_is_in_the_delay_tier():
    topo, table = fake_topology(tiers=(10, 30)), CountingDict()
    topo.delays[10].hold = True
    chains = Chains(topo, table, ChainPolicy(mode="automatic"))
    handling = asyncio.ensure_future(chains(0, [chain_failure("r1", topo.clock.now_ms())]))
    await settle()
    assert len(topo.delays[10].sent) == 1
    assert table.writes == 0 and topo.outcomes.sent == [] and not handling.done()
    topo.delays[10].acknowledge()
    await handling
    assert table.writes == 1 and "scheduled" in outcome_states(topo)


async def test_a_delay_tier_acknowledges_its_record_only_once_the_action_is_acknowledged():
    topo, acks = fake_topology(tiers=(5,)), AckLog()
    action = topo.actions["retry_pipeline"]
    action.hold = True
    holds = TierHolds(topo, acks)
    offering = asyncio.ensure_future(
        holds.offer(event(4), items(topo.clock.now_ms(), -10, prefix="due"))
    )
    await settle()
    assert len(action.sent) == 1 and acks.acked == [] and not offering.done()
    action.acknowledge()
    await offering
    assert acks.acked == [4]


async def test_an_executor_step_returns_only_once_its_effects_are_acknowledged():
    topo = fake_topology(tiers=(5,))
    topo.chain_events.hold = True
    shared = SharedOutbox(topo, linger_s=0.01)
    executed = executed_event()
    sending = asyncio.ensure_future(
        shared.send(Effects(chain_events=(executed,), outcomes=(row("c1"),)), now=1)
    )
    await topo.clock.advance(0.02)
    assert len(topo.chain_events.sent) == 1 and topo.outcomes.sent == []
    assert not sending.done()  # the executor would not acknowledge its request yet
    topo.chain_events.acknowledge()
    await settle()
    assert sending.done() and len(topo.outcomes.sent) == 1


async def test_a_dead_letter_is_kept_before_its_row_says_so():
    topo = fake_topology()
    topo.dead_letter.hold = True
    message = type("M", (), {"topic": "raw", "partition": 1, "offset": 9, "value": b"?"})()
    keeping = asyncio.ensure_future(dead_letter(topo, message, "undecodable", "not JSON"))
    await settle()
    assert len(topo.dead_letter.sent) == 1 and topo.outcomes.sent == []
    topo.dead_letter.acknowledge()
    await keeping
    assert [r["state"] for r in sent_items(topo.outcomes, "outcome")] == ["dead_letter"]


pytestmark = pytest.mark.filterwarnings("ignore")
