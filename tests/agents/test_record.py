"""The sink's batch: rows stored before their messages are acknowledged, counted in the sink
metrics; undecodable messages and rows the store refuses become dead letters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from prometheus_client import REGISTRY

from agents.record import decoded, store_batch
from streams.adapters.clickhouse import OutcomeWriter
from streams.adapters.errors import ErrorKind, PlatformError
from streams.codecs import decode, encode_items
from streams.policy.model import Outcome
from tests.agents.helpers import fake_topology


class MemoryStore:
    database = "pipemedic"

    def __init__(self, failure: PlatformError | None = None) -> None:
        self.failure = failure
        self.rows: list = []

    def ensure_schema(self) -> None:
        pass

    def insert(self, rows) -> None:
        if self.failure is not None:
            raise self.failure
        self.rows += rows

    def query(self, sql, params=None):
        return []

    def close(self) -> None:
        pass


def event(offset: int, body: bytes, timestamp_s: float) -> SimpleNamespace:
    message = SimpleNamespace(
        topic="outcomes", partition=0, offset=offset, value=body, key=None, headers=(),
        timestamp=timestamp_s,
    )  # fmt: skip
    return SimpleNamespace(value=body, message=message)


def rows_message(*event_ids: str) -> bytes:
    rows = [
        Outcome(event_id=e, at=1, chain_id="c", dedup_key="k", state="received") for e in event_ids
    ]
    return encode_items("outcome", [r.to_dict() for r in rows])


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def run(topo, writer, events) -> list:
    acked: list = []

    async def ack(e) -> None:
        acked.append(e)

    rows, good = await decoded(topo, events)
    with ThreadPoolExecutor(1) as thread:
        await store_batch(topo, writer, thread, rows, good, events, ack)
    return acked


async def test_stored_rows_are_counted_and_acknowledged_after_storing() -> None:
    topo = fake_topology()
    now_s = topo.clock.now_ms() / 1000
    store = MemoryStore()
    events = [
        event(0, rows_message("e1", "e2"), now_s - 4),
        event(1, b"\x99garbage", now_s - 3),
        event(2, rows_message("e3"), now_s - 2.5),
    ]
    before = sample("pipemedic_sink_rows_written_total")
    acked = await run(topo, OutcomeWriter(store), events)
    assert [r["event_id"] for r in store.rows] == ["e1", "e2", "e3"]
    assert sample("pipemedic_sink_rows_written_total") - before == 3
    assert sample("pipemedic_sink_lag_seconds") == 2.5  # the newest stored message
    assert acked == events  # the undecodable one too, after its dead letter
    [(reason, _, _)] = topo.dead_letter.sent
    assert reason == "undecodable"


async def test_rows_the_store_refuses_are_dead_lettered_not_counted() -> None:
    topo = fake_topology()
    store = MemoryStore(PlatformError(ErrorKind.BAD_REQUEST, "Cannot parse input"))
    events = [event(7, rows_message("e1"), topo.clock.now_ms() / 1000)]
    before = sample("pipemedic_sink_rows_written_total")
    acked = await run(topo, OutcomeWriter(store), events)
    assert sample("pipemedic_sink_rows_written_total") == before
    [(reason, body, _)] = topo.dead_letter.sent
    assert reason == "sink_rejected" and decode("dead_letter", body)["offset"] == 7
    assert acked == events
