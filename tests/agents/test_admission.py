"""The admission stage as its agent runs it, without a broker: what goes there, what comes
out, and its table written only once the effects are acknowledged."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from agents.admission import Admissions
from agents.outbox import Outbox, partition_for
from streams.codecs import decode_items
from streams.policy.admission import ADMISSION_KEY, ADMITTED, HELD, STATE, AdmissionPolicy
from tests.agents.helpers import RecordingTopic, fake_topology, request, settle

PARTITIONS = 4


def topology():
    topo = fake_topology(partitions=PARTITIONS, tiers=(5, 30))
    topo.admission = RecordingTopic()
    return topo


def items(topic, record="action_request"):
    return [item for _, body, _ in topic.sent for item in decode_items(record, body)]


async def test_new_actions_go_to_admission_at_once_and_admitted_ones_to_their_tier():
    topo = topology()
    now = topo.clock.now_ms()
    outbox = Outbox(topo)
    fresh = request("fresh", now + 4000)
    outbox.add_request(fresh, now=now)
    outbox.add_request(replace(request("ok", now + 4000), context={STATE: ADMITTED}), now=now)
    outbox.add_request(replace(request("later", now + 4000), context={STATE: HELD}), now=now)
    await outbox.flush()
    [(key, _, partition)] = topo.admission.sent
    assert key == ADMISSION_KEY and partition == partition_for(ADMISSION_KEY, PARTITIONS)
    assert [i["chain_id"] for i in items(topo.admission)] == ["fresh"]
    assert sorted(i["chain_id"] for i in items(topo.delays[5])) == ["later", "ok"]


async def test_a_batch_is_decided_in_order_and_its_table_written_after_the_acknowledgement():
    topo, table = topology(), {}
    topo.delays[5].hold = True
    policy = AdmissionPolicy(budget_usd=1.0, action_cost_usd={"retry_pipeline": 0.4})
    stage = Admissions(topo, table, policy)
    now = topo.clock.now_ms()
    batch = [request(f"c{i}", now + 4000) for i in range(3)]
    deciding = asyncio.ensure_future(stage(partition_for(ADMISSION_KEY, PARTITIONS), batch))
    await settle()
    admitted = items(topo.delays[5])
    assert [i["chain_id"] for i in admitted] == ["c0", "c1"]  # on to their backoff
    assert {i["context"][STATE] for i in admitted} == {ADMITTED}
    [refused] = items(topo.chain_events, "chain_event")
    assert refused["chain_id"] == "c2" and "daily cost cap" in refused["detail"]
    assert table == {} and not deciding.done()  # nothing claimed before the broker has it
    topo.delays[5].acknowledge()
    await deciding
    assert stage.spent_usd() == 0.8
