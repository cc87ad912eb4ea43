"""Gauges read when /metrics is scraped, from the stages that hold the state."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

from aiokafka.structs import TopicPartition as TP

from agents.admission import storms_on
from agents.delay import held_by_topic
from agents.metrics import LiveGauges, consumer_lag


def samples(collector: LiveGauges) -> dict[str, list[tuple[dict, float]]]:
    return {
        family.name: [(s.labels, s.value) for s in family.samples] for family in collector.collect()
    }


def test_each_reading_becomes_a_gauge_and_one_that_fails_is_left_out_of_that_scrape():
    live = LiveGauges()
    live.add("held", "held records", ("topic",), lambda: {("delay-5s",): 3, ("delay-30s",): 1})
    live.add("broken", "a stage rebuilding", (), lambda: 1 / 0)
    live.add("held", "held records", ("topic",), lambda: {("delay-5s",): 7})  # rebuilt worker
    assert samples(live) == {"held": [({"topic": "delay-5s"}, 7.0)]}


def test_what_the_stages_hold_per_label():
    holds = [
        SimpleNamespace(waiting={("delay-5s", 0): deque([1, 2]), ("delay-5s", 3): deque([1])}),
        SimpleNamespace(waiting={("delay-30s", 1): deque([1])}),
    ]
    assert held_by_topic(holds) == {("delay-5s",): 3.0, ("delay-30s",): 1.0}
    table = {
        "storm|0|adf|adf-1": {"state": "storm"},
        "storm|0|adf|adf-2": {"seen": []},  # over
        "cap|0|adf|adf-1|p": [1],
        "budget|19700": {"usd": 1.0},
    }
    assert storms_on(table) == {("adf|adf-1",): 1.0}
    monitor = SimpleNamespace(
        tp_end_offsets={TP("raw", 0): 10, TP("raw", 1): 5, TP("outcomes", 0): 4},
        tp_committed_offsets={TP("raw", 0): 10, TP("raw", 1): 2},
    )
    assert consumer_lag(SimpleNamespace(monitor=monitor)) == {("raw",): 3, ("outcomes",): 4}
