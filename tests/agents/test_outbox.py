"""The outbox: one batch per partition, batches under the size cap, shared flushes.

Topics here are recorders of what would be sent; the encoding is the real one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from agents.outbox import MAX_BATCH_BYTES, Outbox, SharedOutbox, partition_for
from streams.codecs import decode, decode_items
from streams.policy.model import (
    Alert,
    ChainEvent,
    ClassifiedAlert,
    Outcome,
)
from streams.policy.steps import Effects
from tests.agents.helpers import RecordingTopic, drive, fake_topology, request

PARTITIONS = 4


TIERS = (5, 30)


def topology():
    return fake_topology(partitions=PARTITIONS, tiers=TIERS)


def alert(run_id: str, message: str = "") -> ClassifiedAlert:
    found = Alert(
        alert_id=run_id,
        source="adf",
        kind="pipeline_run",
        scope="f",
        run_id=run_id,
        message=message,
    )
    return ClassifiedAlert(alert=found, received_at=1)


def row(chain_id: str) -> Outcome:
    return Outcome(event_id=chain_id, at=1, chain_id=chain_id, dedup_key=chain_id, state="received")


async def test_one_batch_per_partition_holding_only_its_keys():
    topo = topology()
    outbox = Outbox(topo)
    for i in range(40):
        outbox.add_classified(alert(f"run-{i}"))
    await outbox.flush()
    partitions = [p for _, _, p in topo.classified.sent]
    assert sorted(partitions) == sorted(set(partitions))  # one message per partition
    seen = 0
    for key, body, partition in topo.classified.sent:
        items = decode_items("classified_alert", body)
        keys = [f"adf|f|{i['alert']['run_id']}" for i in items]
        assert partition_for(key, PARTITIONS) == partition
        assert {partition_for(k, PARTITIONS) for k in keys} == {partition}
        seen += len(items)
    assert seen == 40


async def test_a_batch_over_the_cap_is_split_and_keeps_its_order():
    topo = topology()
    outbox = Outbox(topo)
    big = "x" * 20_000
    runs = [f"run-{i}" for i in range(200) if partition_for(f"adf|f|run-{i}", PARTITIONS) == 0]
    for run_id in runs:
        outbox.add_classified(alert(run_id, big))
    await outbox.flush()
    bodies = [body for _, body, _ in topo.classified.sent]
    assert len(bodies) > 1 and all(len(b) <= MAX_BATCH_BYTES for b in bodies)
    order = [i["alert"]["run_id"] for b in bodies for i in decode_items("classified_alert", b)]
    assert order == runs


async def test_steps_finishing_together_share_messages():
    topo = topology()
    shared = SharedOutbox(topo, linger_s=0.02)
    events = [
        ChainEvent(kind="executed", chain_id=f"c{i}", dedup_key="k", at=1, alert=alert("r").alert)
        for i in range(10)
    ]
    sends = asyncio.gather(
        *(
            shared.send(Effects(chain_events=(e,), outcomes=(row(e.chain_id),)), now=1)
            for e in events
        )
    )
    await topo.clock.advance(0.019)
    assert topo.outcomes.sent == []  # still lingering for more steps
    await drive(topo.clock, sends)
    assert len(topo.outcomes.sent) == 1
    assert len(decode_items("outcome", topo.outcomes.sent[0][1])) == 10
    assert len(topo.chain_events.sent) <= PARTITIONS
    assert sum(len(decode_items("chain_event", b)) for _, b, _ in topo.chain_events.sent) == 10


async def test_a_failed_flush_reaches_every_step_in_it():
    topo = topology()
    topo.outcomes.fail = True
    shared = SharedOutbox(topo, linger_s=0.01, retry_delays_s=())
    results = await drive(
        topo.clock,
        asyncio.gather(
            *(shared.send(Effects(outcomes=(row(f"c{i}"),)), now=1) for i in range(3)),
            return_exceptions=True,
        ),
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    topo.outcomes.fail = False  # the next steps get a fresh outbox
    await drive(topo.clock, shared.send(Effects(outcomes=(row("c9"),)), now=1))
    assert len(topo.outcomes.sent) == 1


def test_partition_for_matches_the_kafka_default_partitioner():
    from aiokafka.partitioner import DefaultPartitioner

    for key in ("adf|f|run-1", "dbx|123|cluster|abc", "é"):
        assert partition_for(key, 12) == DefaultPartitioner()(key.encode(), list(range(12)), [])


pytestmark = pytest.mark.filterwarnings("ignore")


@dataclass
class FlakyTopic(RecordingTopic):
    failures_left: int = 2
    attempts: int = 0

    async def send(self, *, key, value, partition, value_serializer, headers=None):
        self.attempts += 1
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("broker unreachable")
        self.sent.append((key, value, partition))
        return self._delivery()


async def test_a_send_the_producer_gave_up_on_is_tried_again_and_nothing_is_sent_twice():
    topo = topology()
    topo.outcomes = FlakyTopic(failures_left=2)
    outbox = Outbox(topo, retry_delays_s=(0.01, 0.01, 0.01))
    for i in range(6):
        outbox.add_classified(alert(f"run-{i}"))
    outbox.add_outcomes([row("c1"), row("c2")])
    await drive(topo.clock, outbox.flush())
    assert topo.outcomes.attempts == 3 and len(topo.outcomes.sent) == 1
    classified = [
        i for _, b, _ in topo.classified.sent for i in decode_items("classified_alert", b)
    ]
    assert len(classified) == 6  # sent once, although the flush ran three times


async def test_a_send_that_keeps_failing_is_raised_after_the_last_retry():
    topo = topology()
    topo.outcomes = FlakyTopic(failures_left=10)
    outbox = Outbox(topo, retry_delays_s=(0.01,))
    outbox.add_outcomes([row("c1")])
    with pytest.raises(ConnectionError):
        await drive(topo.clock, outbox.flush())
    assert topo.outcomes.attempts == 2


# ---- action requests: due ones one by one, waiting ones batched per tier partition ----------


async def test_due_requests_go_one_by_one_and_waiting_ones_in_one_batch_per_tier_partition():
    topo = topology()
    outbox = Outbox(topo)
    now = 1_000_000
    due = [request(f"due-{i}", now) for i in range(3)]
    short = [request(f"short-{i}", now + 4_000) for i in range(20)]  # 5 s tier
    long = [request(f"long-{i}", now + 600_000) for i in range(20)]  # hops through 30 s
    for r in (*due, *short, *long):
        outbox.add_request(r, now=now)
    await outbox.flush()

    singles = topo.actions["retry_pipeline"].sent
    assert [key for key, _, _ in singles] == [r.chain_id for r in due]
    assert [decode("action_request", body)["tier"] for _, body, _ in singles] == ["", "", ""]
    for tier, sent in ((5, short), (30, long)):
        messages = topo.delays[tier].sent
        assert len(messages) == len({p for _, _, p in messages}) <= PARTITIONS
        items = []
        for _, body, partition in messages:
            batch = decode_items("action_request", body)
            assert {partition_for(i["chain_id"], PARTITIONS) for i in batch} == {partition}
            assert {(i["tier"], i["hop_due_at"]) for i in batch} == {
                (f"{tier}s", now + tier * 1000)
            }
            items += [i["chain_id"] for i in batch]
        assert sorted(items) == sorted(r.chain_id for r in sent)
