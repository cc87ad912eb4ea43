"""Dedup and chains as their agents run them, without a broker: batch merges, effects sent
before the table is written, expiry on the clock. The tables are plain dicts (a Faust table
is a mapping to these stages); the topics record what would be sent."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import pytest

from agents.chains import Chains
from agents.common import each_batch
from agents.dedup import Dedup
from agents.outbox import partition_for
from streams.codecs import decode, decode_items, encode_items
from streams.policy.chains import ChainPolicy
from streams.policy.model import (
    Alert,
    ChainEvent,
    ChainEventKind,
    Classification,
    ClassifiedAlert,
    OutcomeState,
    Signal,
)
from tests.agents.helpers import drive, fake_topology, settle

HOUR_MS = 3_600_000
GATEWAY = Classification("GatewayTimeout", "low", "retry_pipeline", 3, (10, 30, 60), "adf-2108-504")


def failure(run_id: str, signal: str = Signal.FAILURE.value) -> ClassifiedAlert:
    alert = Alert(
        alert_id=f"a-{run_id}",
        source="adf",
        kind="pipeline_run",
        scope="f1",
        run_id=run_id,
        pipeline="p",
        signal=signal,
    )
    wants = signal == Signal.FAILURE.value
    return ClassifiedAlert(alert=alert, received_at=1, classification=GATEWAY if wants else None)


def sent_items(topic, record: str) -> list[dict]:
    return [item for _, body, _ in topic.sent for item in decode_items(record, body)]


def outcome_states(topo) -> list[str]:
    return [row["state"] for row in sent_items(topo.outcomes, "outcome")]


class CountingDict(dict):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def __setitem__(self, key, value):
        self.writes += 1
        super().__setitem__(key, value)


# ---- dedup ---------------------------------------------------------------------------------


async def test_a_burst_in_one_batch_is_one_chain_and_one_table_write():
    topo, table = fake_topology(), CountingDict()
    dedup = Dedup(topo, table, horizon_ms=HOUR_MS)
    await dedup(0, [failure("r1")] * 5)
    events = sent_items(topo.chain_events, "chain_event")
    assert [e["kind"] for e in events] == [ChainEventKind.FAILURE.value]
    assert outcome_states(topo).count(OutcomeState.DUPLICATE.value) == 4
    assert table.writes == 1 and table["adf|f1|r1"]["copies"] == 4


async def test_a_later_batch_sees_what_an_earlier_one_wrote():
    topo, table = fake_topology(), CountingDict()
    dedup = Dedup(topo, table, horizon_ms=HOUR_MS)
    await dedup(0, [failure("r1")])
    await dedup(0, [failure("r1"), failure("r2")])
    chains = [e["chain_id"] for e in sent_items(topo.chain_events, "chain_event")]
    assert chains == ["adf|f1|r1", "adf|f1|r2"]


async def test_a_failed_send_leaves_the_table_untouched_so_a_redelivery_acts_again():
    topo, table = fake_topology(), CountingDict()
    topo.chain_events.fail = True
    dedup = Dedup(topo, table, horizon_ms=HOUR_MS)
    with pytest.raises(ConnectionError):  # after the outbox's own retries
        await drive(topo.clock, dedup(0, [failure("r1")]), step_s=1)
    assert table.writes == 0  # nothing claims the failure was passed on
    topo.chain_events.fail = False
    await dedup(0, [failure("r1")])
    assert len(sent_items(topo.chain_events, "chain_event")) == 1


async def test_an_entry_is_swept_a_horizon_later_and_the_run_can_fail_anew():
    topo, table = fake_topology(), CountingDict()
    dedup = Dedup(topo, table, horizon_ms=HOUR_MS)
    await dedup(0, [failure("r1")])
    await topo.clock.advance(3600)
    await dedup(0, [failure("r2")])  # the sweep runs at the start of a batch
    assert "adf|f1|r1" not in table
    await dedup(0, [failure("r1")])
    assert len(sent_items(topo.chain_events, "chain_event")) == 3


# ---- chains --------------------------------------------------------------------------------


def chain_failure(run_id: str, at: int) -> ChainEvent:
    record = failure(run_id)
    return ChainEvent(
        kind=ChainEventKind.FAILURE.value,
        chain_id=f"adf|f1|{run_id}",
        dedup_key=f"adf|f1|{run_id}",
        at=at,
        alert=record.alert,
        classification=GATEWAY,
        received_at=at,
    )


async def test_a_new_failure_schedules_its_first_attempt_through_a_delay_tier():
    topo, table = fake_topology(tiers=(10, 30)), CountingDict()
    chains = Chains(topo, table, ChainPolicy(mode="automatic"))
    now = topo.clock.now_ms()
    await chains(0, [chain_failure("r1", now)])
    [(key, body, _)] = topo.delays[10].sent
    [request] = decode_items("action_request", body)
    assert key == "adf|f1|r1" and request["action"] == "retry_pipeline"
    assert request["due_at"] == now + 10_000 and request["attempt"] == 1
    assert table.writes == 1 and OutcomeState.SCHEDULED.value in outcome_states(topo)


async def test_events_of_one_chain_in_one_batch_are_applied_in_order_and_written_once():
    topo, table = fake_topology(tiers=(10, 30)), CountingDict()
    chains = Chains(topo, table, ChainPolicy(mode="automatic"))
    now = topo.clock.now_ms()
    first = chain_failure("r1", now)
    again = ChainEvent(**{**first.__dict__, "kind": ChainEventKind.FAILURE.value})
    await chains(0, [first, again])
    assert table.writes == 1
    assert len(topo.delays[10].sent) == 1  # the repeat did not schedule a second attempt


async def test_observe_mode_schedules_nothing_and_says_what_it_would_do():
    topo, table = fake_topology(tiers=(10, 30)), CountingDict()
    chains = Chains(topo, table, ChainPolicy(mode="observe", page_hook=False))
    await chains(0, [chain_failure("r1", topo.clock.now_ms())])
    assert not any(t.sent for t in topo.delays.values())
    assert not any(t.sent for t in topo.actions.values())
    assert table.writes == 1


# ---- one stateful hop: dedup moves the chains its partition owns -----------------------------


def owned(partitions: int = 4) -> tuple[str, int, str]:
    """A run whose chain (its dedup key) hashes to partition 0, and one that does not."""
    mine = next(f"r{i}" for i in range(100) if partition_for(f"adf|f1|r{i}", partitions) == 0)
    other = next(f"r{i}" for i in range(100) if partition_for(f"adf|f1|r{i}", partitions) != 0)
    return mine, 0, other


def linked(run_id: str, chain_id: str) -> ClassifiedAlert:
    """The link an executor sends when it starts a rerun: ``run_id`` belongs to ``chain_id``."""
    record = failure(run_id, signal=Signal.LINK.value)
    return ClassifiedAlert(alert=replace(record.alert, chain_id=chain_id), received_at=1)


async def test_a_first_failure_moves_its_chain_in_the_same_stage_without_a_chain_event():
    topo = fake_topology(tiers=(10, 30))
    dedup_table, chain_table = CountingDict(), CountingDict()
    chains = Chains(topo, chain_table, ChainPolicy(mode="automatic"))
    dedup = Dedup(topo, dedup_table, horizon_ms=HOUR_MS, chains=chains)
    run, partition, _ = owned()
    await dedup(partition, [failure(run), failure(run)])
    assert topo.chain_events.sent == []  # no second hop
    [(key, body, _)] = topo.delays[10].sent
    assert key == f"adf|f1|{run}" and decode_items("action_request", body)[0]["attempt"] == 1
    assert outcome_states(topo) == ["received", "duplicate", "scheduled"]
    assert dedup_table.writes == 1 and chain_table.writes == 1
    assert chain_table[f"adf|f1|{run}"]["state"] == "scheduled"


async def test_a_fact_of_a_chain_kept_elsewhere_still_travels_to_its_partition():
    topo = fake_topology(tiers=(10, 30))
    chain_table = CountingDict()
    chains = Chains(topo, chain_table, ChainPolicy(mode="automatic"))
    dedup = Dedup(topo, CountingDict(), horizon_ms=HOUR_MS, chains=chains)
    _, partition, origin = owned()
    # a rerun started for the chain of ``origin`` (another partition's) fails on partition 0
    rerun = next(f"x{i}" for i in range(100) if partition_for(f"adf|f1|x{i}", 4) == partition)
    await dedup(partition, [linked(rerun, f"adf|f1|{origin}"), failure(rerun)])
    [event] = sent_items(topo.chain_events, "chain_event")
    assert event["chain_id"] == f"adf|f1|{origin}" and event["kind"] == "failure"
    assert chain_table.writes == 0 and not any(t.sent for t in topo.delays.values())


async def test_the_chain_and_dedup_entry_are_written_only_once_the_retry_is_acknowledged():
    topo = fake_topology(tiers=(10, 30))
    topo.delays[10].hold = True
    dedup_table, chain_table = CountingDict(), CountingDict()
    chains = Chains(topo, chain_table, ChainPolicy(mode="automatic"))
    dedup = Dedup(topo, dedup_table, horizon_ms=HOUR_MS, chains=chains)
    run, partition, _ = owned()
    handling = asyncio.ensure_future(dedup(partition, [failure(run)]))
    await settle()
    assert len(topo.delays[10].sent) == 1 and topo.outcomes.sent == []
    assert dedup_table.writes == chain_table.writes == 0 and not handling.done()
    # the chains stage waits for its turn on this partition: it never reads the chain while
    # the dedup stage is between its send and its write
    again = asyncio.ensure_future(chains(partition, [chain_failure(run, topo.clock.now_ms())]))
    await settle()
    assert not again.done() and chain_table.writes == 0
    topo.delays[10].acknowledge()
    await handling
    await again
    assert dedup_table.writes == 1
    # the chains stage saw the chain as the dedup stage left it: the repeat is absorbed
    assert chain_table[f"adf|f1|{run}"]["attempts"] == 1
    assert len(topo.delays[10].sent) == 1  # no second attempt scheduled


# ---- the batch loop both stages share --------------------------------------------------------


class Stream:
    def __init__(self, *values: bytes):
        self.values = values

    async def events(self):
        for offset, value in enumerate(self.values):
            message = SimpleNamespace(topic="t", partition=2, offset=offset, value=value)
            yield SimpleNamespace(message=message, value=value)


async def test_the_batch_loop_dead_letters_what_it_cannot_use_and_goes_on():
    topo = fake_topology()
    handled: list[tuple[int, list]] = []

    async def handle(partition, batch):
        if any(e.alert.run_id == "boom" for e in batch):
            raise RuntimeError("a bug of ours")
        handled.append((partition, batch))

    good = encode_items("chain_event", [chain_failure("r1", 1).to_dict()])
    boom = encode_items("chain_event", [chain_failure("boom", 1).to_dict()])
    await each_batch(topo, Stream(b"\x00garbage", boom, good), "chain_event",
                     ChainEvent.from_dict, handle)  # fmt: skip
    assert [(p, [e.chain_id for e in b]) for p, b in handled] == [(2, ["adf|f1|r1"])]
    reasons = [decode("dead_letter", body)["reason"] for _, body, _ in topo.dead_letter.sent]
    assert reasons == ["undecodable", "internal_error"]
