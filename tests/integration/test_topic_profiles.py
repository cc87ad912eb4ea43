"""The compact topic profile on the real embedded broker: the demo scenario uses no topic
but the nine of its plan, each shared topic's records name their lane, and the four tables
live in one compacted changelog.

(The end-to-end modules marked ``both_profiles`` run on both profiles: see conftest.py.)
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from pipemedic.demo import watch_until_settled
from pipemedic.stack import DEMO_DATA, EmbeddedStack
from pipemedic.tansu import true_end_offsets
from pipemedic.worker import planned_topics
from streams.policy import routing
from streams.policy.topic_plan import tier_named

pytestmark = pytest.mark.integration

ALERTS = [line.encode() for line in (DEMO_DATA / "alerts.jsonl").read_text().splitlines() if line]


async def _read_all(bootstrap: str, topic: str) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await true_end_offsets(bootstrap, await consumer.end_offsets(tps))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        messages = []
        while pending:
            for tp, batch in (await consumer.getmany(*pending, timeout_ms=500)).items():
                messages += [m for m in batch if m.offset < ends[tp]]
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return messages
    finally:
        await consumer.stop()


async def _topics(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


def _lane(message) -> str | None:
    for key, value in message.headers or ():
        if key == routing.LANE_HEADER:
            return value.decode()
    return None


@pytest.fixture(scope="module")
def compact_run(tmp_path_factory):
    with EmbeddedStack(
        tmp_path_factory.mktemp("compact"), DEMO_DATA / "world.yaml", topic_profile="compact"
    ) as stack:
        stack.send_raw(ALERTS)
        watch = asyncio.run(watch_until_settled(stack, timeout_s=180))
        planned = planned_topics(stack.settings)
        on_broker = asyncio.run(_topics(stack.bootstrap))
        stages = asyncio.run(_read_all(stack.bootstrap, routing.STAGES))
        actions = asyncio.run(_read_all(stack.bootstrap, routing.ACTIONS))
        (changelog,) = (t for t in planned if t.endswith("-changelog"))
        state = asyncio.run(_read_all(stack.bootstrap, changelog))
    return watch, planned, on_broker, stages, actions, state


def test_the_plan_fits_event_hubs_standard_and_the_worker_uses_nothing_else(compact_run):
    watch, planned, on_broker, *_ = compact_run
    assert watch.settled and watch.open_chains == 0
    standard = tier_named("standard")
    assert len(planned) <= standard.max_event_hubs
    # nothing was sent to (hence auto-created on) a topic of the default profile
    assert on_broker == set(planned)


def test_every_record_on_a_shared_topic_names_its_lane(compact_run):
    _, _, _, stages, actions, _ = compact_run
    stage_lanes = Counter(_lane(m) for m in stages)
    assert set(stage_lanes) <= {routing.ENRICH, routing.CLASSIFIED, routing.CHAIN_EVENTS}
    assert stage_lanes[routing.CLASSIFIED] and stage_lanes[routing.CHAIN_EVENTS]
    assert stage_lanes[routing.ENRICH]  # the demo's metric alert is looked into first
    action_lanes = Counter(_lane(m) for m in actions)
    assert routing.action_topic("retry_pipeline") in action_lanes
    assert set(action_lanes) <= set(routing.all_action_topics())  # none without a lane


def test_the_tables_share_one_changelog_each_under_its_prefix(compact_run):
    *_, state = compact_run
    prefixes = Counter(json.loads(m.key).split("/", 1)[0] for m in state)
    assert {"dedup", "chains", "notices"} <= set(prefixes)
