"""Issue 2's walking skeleton, on the real embedded stack: raw alerts through every stage.

Tansu broker, platform simulator and a real worker process; the assertions read what the
worker stored in chDB after a graceful stop.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from pipemedic.demo import watch_until_settled
from pipemedic.reporting import clickhouse_config
from pipemedic.stack import DEMO_DATA, EmbeddedStack
from pipemedic.tansu import true_end_offsets
from pipemedic.worker import planned_topics
from streams.adapters.clickhouse import open_store
from streams.codecs import decode
from streams.policy import routing
from streams.policy.topic_plan import tier_named

# runs on the default and the compact topic profile (tests/integration/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.both_profiles]

ALERTS = [line.encode() for line in (DEMO_DATA / "alerts.jsonl").read_text().splitlines() if line]


async def _dead_letters(bootstrap: str, expected: int) -> list[dict]:
    consumer = AIOKafkaConsumer(
        routing.DEAD_LETTER,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    letters: list[dict] = []
    try:
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=500)
            letters += [decode("dead_letter", m.value) for ms in batches.values() for m in ms]
            if len(letters) >= expected:
                break
    finally:
        await consumer.stop()
    return letters


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


@dataclass
class Topics:
    """What the scenario left on the broker: every topic, and the records of the topics the
    compact profile shares (empty on the default profile)."""

    planned: tuple[str, ...]
    on_broker: set[str]
    stages: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    state: list = field(default_factory=list)  # the compact profile's one changelog


def _topics_of(stack: EmbeddedStack) -> Topics:
    planned = planned_topics(stack.settings)
    seen = Topics(planned, asyncio.run(_topics(stack.bootstrap)))
    if stack.settings.topic_profile == routing.COMPACT_PROFILE:
        seen.stages = asyncio.run(_read_all(stack.bootstrap, routing.STAGES))
        seen.actions = asyncio.run(_read_all(stack.bootstrap, routing.ACTIONS))
        (changelog,) = (t for t in planned if t.endswith("-changelog"))
        seen.state = asyncio.run(_read_all(stack.bootstrap, changelog))
    return seen


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, topic_profile):
    """The bundled sample through the whole pipeline, once for every assertion below."""
    with EmbeddedStack(tmp_path_factory.mktemp("skeleton"), DEMO_DATA / "world.yaml") as stack:
        stack.send_raw(ALERTS)
        watch = asyncio.run(watch_until_settled(stack, timeout_s=180))
        letters = asyncio.run(_dead_letters(stack.bootstrap, 3))
        worker_alive = stack.worker.alive
        metrics = stack.worker.metrics()  # GET /metrics of the worker that did it all
        create_runs = stack.simulator.count("POST", "*/createRun")
        topics = _topics_of(stack)
        stack.stop_worker()  # graceful: the sink flushes; chDB is then ours to open
        store = open_store(clickhouse_config(stack.settings))
        try:
            rows = store.query(
                "SELECT chain_id, state, attempt, action, error_type, pipeline, detail,"
                " toUnixTimestamp64Milli(at) AS at,"
                " toUnixTimestamp64Milli(due_at) AS due_at FROM pipemedic.outcomes FINAL ORDER BY at"
            )
        finally:
            store.close()
    return watch, letters, worker_alive, metrics, create_runs, rows, topics


def test_every_chain_reaches_a_final_state(demo_run):
    watch, *_ = demo_run
    assert watch.settled
    assert watch.chains and set(watch.chains.values()) <= {"resolved", "gave_up", "manual"}


def test_one_action_per_distinct_run_and_duplicates_counted(demo_run):
    *_, create_runs, rows, _ = demo_run
    executed = Counter(
        (r["chain_id"], r["attempt"], r["action"]) for r in rows if r["state"] == "executed"
    )
    assert executed and all(n == 1 for n in executed.values()), executed
    # a job run out of memory: the cluster is scaled, then the run repaired (issue 16)
    rollup = [key[2] for key in executed if key[0] == "dbx|4417362907193652|911005"]
    assert rollup == ["scale_cluster", "repair_job"]
    # the gateway-timeout run was alerted 3 times (2 alerts + its diagnostic record)
    gateway = [r for r in rows if r["pipeline"] == "Copy_Orders_To_Lake"]
    assert sum(r["state"] == "received" for r in gateway) == 1
    assert sum(r["state"] == "duplicate" for r in gateway) == 2
    # its pipeline fails on the first rerun and succeeds on the second: exactly two reruns,
    # plus one each for the blob (upstream), throttled and enriched metric pipelines, and two
    # for the 500s that give up
    assert create_runs == 2 + 1 + 1 + 2 + 1


def test_no_action_before_its_due_time(demo_run):
    *_, rows, _ = demo_run
    due = defaultdict(list)
    for r in rows:
        if r["state"] == "scheduled":
            due[(r["chain_id"], r["attempt"])].append(r["due_at"])
    checked = 0
    for r in rows:
        if r["state"] == "executed":
            assert r["at"] >= max(due[(r["chain_id"], r["attempt"])]), r
            checked += 1
    assert checked >= 8


def test_malformed_input_is_dead_lettered_with_a_reason_and_the_worker_goes_on(demo_run):
    watch, letters, worker_alive, *_ = demo_run
    assert worker_alive
    assert sorted(letter["reason"] for letter in letters) == [
        "not_json",
        "not_json",
        "unknown_shape",
    ]
    assert all(letter["payload"] and letter["topic"] == routing.RAW for letter in letters)
    assert watch.states["dead_letter"] == 3


def test_the_metrics_count_what_the_scenario_did(demo_run):
    watch, _, _, metrics, create_runs, _, _ = demo_run

    def rows_of(state: str) -> float:
        return metrics.get(f'pipemedic_outcome_rows_total{{state="{state}"}}', 0)

    resolved = sum(1 for state in watch.chains.values() if state == "resolved")
    assert rows_of("resolved") >= resolved > 0
    assert rows_of("scheduled") >= 1 and rows_of("dead_letter") >= 3
    started = sum(
        v for k, v in metrics.items() if k.startswith("pipemedic_steps_total") and "started" in k
    )
    assert started >= create_runs > 0
    assert metrics["pipemedic_breakers_open"] == 0
    assert metrics["pipemedic_approvals_waiting"] == 0
    assert metrics['pipemedic_consumer_lag{topic="alerts-raw"}'] == 0  # settled: all committed


def test_what_ingest_saw_is_in_the_audit_trail_as_the_metrics_counted_it(demo_run):
    _, _, _, metrics, _, rows, _ = demo_run
    counted: Counter[tuple[str, str]] = Counter()
    for key, value in metrics.items():
        if key.startswith("pipemedic_ingest_records_total{"):
            labels = dict(part.split("=") for part in key[key.index("{") + 1 : -1].split(","))
            counted[(labels["shape"].strip('"'), labels["outcome"].strip('"'))] += int(value)
    tallied: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if row["state"] == "ingested":
            counts = json.loads(row["detail"])
            for outcome, name in (
                ("alert", "alerts"),
                ("dropped", "dropped"),
                ("ignored", "ignored"),
                ("invalid", "invalid"),
            ):
                tallied[(counts["shape"], outcome)] += counts[name]
    assert +tallied == +counted and sum(counted.values()) > 0
    assert any(shape == "adf_diagnostic" and n for (shape, outcome), n in tallied.items())


# ---- the topic profile (both: every topic used is planned; compact: lanes, one changelog) ----


def test_the_worker_uses_no_topic_but_the_planned_ones(demo_run, topic_profile):
    topics = demo_run[-1]
    # nothing was sent to (hence auto-created on) a topic the profile does not plan
    assert topics.on_broker == set(topics.planned)
    if topic_profile == routing.COMPACT_PROFILE:
        assert len(topics.planned) <= tier_named("standard").max_event_hubs


def test_on_the_compact_profile_every_shared_record_names_its_lane(demo_run, topic_profile):
    topics = demo_run[-1]
    if topic_profile != routing.COMPACT_PROFILE:  # a topic of its own for every stage
        assert not {routing.STAGES, routing.ACTIONS, routing.DELAYS} & set(topics.planned)
        return
    stage_lanes = Counter(_lane(m) for m in topics.stages)
    assert set(stage_lanes) <= {routing.ENRICH, routing.CLASSIFIED, routing.CHAIN_EVENTS}
    assert stage_lanes[routing.CLASSIFIED] and stage_lanes[routing.CHAIN_EVENTS]
    assert stage_lanes[routing.ENRICH]  # the demo's metric alert is looked into first
    action_lanes = Counter(_lane(m) for m in topics.actions)
    assert routing.action_topic("retry_pipeline") in action_lanes
    assert set(action_lanes) <= set(routing.all_action_topics())  # none without a lane
    # the four tables share one compacted changelog, each under its prefix
    prefixes = Counter(json.loads(m.key).split("/", 1)[0] for m in topics.state)
    assert {"dedup", "chains", "notices"} <= set(prefixes)
