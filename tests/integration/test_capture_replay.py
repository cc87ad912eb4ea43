"""Capture and replay on the embedded broker, through the command line.

Round trip: a topic with binary values, binary headers, keys (and no key) in multi-record
batches over three partitions → capture → replay to a new topic → capture again: the same
records byte for byte, partition, order and timestamp included. Then the replay mark, a
time window, and a dead-letter redrive back to the topic each letter came from.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from pipemedic import cli
from pipemedic.capture import read_capture
from pipemedic.embedded import EmbeddedBroker, create_topics
from pipemedic.kafka import producer
from pipemedic.replay import ReplayRequest, replay
from streams.codecs import encode
from streams.policy.model import DeadLetter, Header
from streams.policy.replays import REPLAY_HEADER

pytestmark = pytest.mark.integration

BASE_MS = 1_715_090_000_000


def records() -> list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]], int]]:
    """(partition, key, value, headers, timestamp): not UTF-8, empty, JSON, keyless."""
    found = []
    for i in range(60):
        value = bytes([i, 0xFF, 0xFE, 0x00]) * (i % 5) if i % 3 else json.dumps({"n": i}).encode()
        key = None if i % 7 == 0 else f"key-{i % 4}".encode() if i % 2 else bytes([0x80, i])
        headers = [("trace", bytes([0xC3, 0x28, i])), ("n", str(i).encode())] if i % 4 else []
        found.append((i % 3, key, value, headers, BASE_MS + i * 1000))
    return found


async def produce(bootstrap: str) -> None:
    await create_topics(bootstrap, ["source", "copy", "marked"], 3)
    sender = producer(bootstrap, linger_ms=50)  # several records per batch: the Tansu case
    await sender.start()
    try:
        pending = [
            await sender.send("source", v, key=k, partition=p, headers=h, timestamp_ms=t)
            for p, k, v, h, t in records()
        ]
        await asyncio.gather(*pending)
    finally:
        await sender.stop()


def run(*argv: str) -> None:
    assert cli.main([*argv, "--json"]) == 0, argv


def comparable(path: Path) -> list[tuple]:
    _, captured = read_capture(path)
    return sorted((r.partition, r.offset, r.timestamp, r.key, r.value, r.headers) for r in captured)


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with EmbeddedBroker(tmp_path / "broker") as started:
        monkeypatch.setenv("PIPEMEDIC_BROKER_URL", started.url)
        monkeypatch.setenv("PIPEMEDIC_DATA_DIR", str(tmp_path / "data"))
        asyncio.run(produce(started.bootstrap))
        yield started


def test_round_trip_is_byte_identical_and_a_replay_is_marked(broker, tmp_path: Path) -> None:
    first, second, third = tmp_path / "first.jsonl", tmp_path / "second.jsonl", tmp_path / "m.jsonl"
    run("capture", "source", "--out", str(first), "--from-beginning")
    meta, captured = read_capture(first)
    assert len(captured) == 60 and meta.ends == {0: 20, 1: 20, 2: 20}

    run("replay", str(first), "--to", "copy", "--keep-times", "--no-mark")
    run("capture", "copy", "--out", str(second))
    assert comparable(second) == comparable(first)
    # bytes that are not UTF-8 travel in the file as base64, and come back as they were
    assert b'"b64"' in first.read_bytes()
    [one] = [r for r in captured if (r.partition, r.offset) == (1, 0)]
    assert (one.key, one.value, one.timestamp) == (
        b"key-1",
        bytes([1, 0xFF, 0xFE, 0]),
        BASE_MS + 1000,
    )
    assert one.headers == (("trace", bytes([0xC3, 0x28, 1])), ("n", b"1"))

    run("replay", str(first), "--to", "marked", "--keep-times")
    run("capture", "marked", "--out", str(third))
    marked = comparable(third)
    assert [r[:5] for r in marked] == [r[:5] for r in comparable(first)]
    assert all(r[5][-1] == (REPLAY_HEADER, meta.capture_id.encode()) for r in marked)


def test_a_time_window_a_partition_and_a_limit(broker, tmp_path: Path) -> None:
    out = tmp_path / "window.jsonl"
    since, until = BASE_MS + 10_000, BASE_MS + 29_000
    run("capture", "source", "--out", str(out), "--since", str(since), "--until", str(until))
    _, captured = read_capture(out)
    assert sorted(r.timestamp for r in captured) == [BASE_MS + i * 1000 for i in range(10, 30)]
    run("capture", "source", "--out", str(out), "--partition", "2", "--limit", "5")
    _, captured = read_capture(out)
    assert [(r.partition, r.offset) for r in captured] == [(2, n) for n in range(5)]


def test_a_dead_letter_capture_redrives_each_letter_to_its_origin(broker, tmp_path) -> None:
    letters = [
        DeadLetter(
            reason="not_json",
            error="bad",
            topic="alerts-raw",
            partition=n % 2,
            offset=n,
            at=BASE_MS,
            payload=b"\xff{fixed later" + bytes([n]),
            key=f"k{n}".encode(),
            headers=(Header("origin", bytes([0xFE, n])),),
        )
        for n in range(4)
    ]

    async def letters_in() -> None:
        await create_topics(broker.bootstrap, ["dead-letter", "alerts-raw"], 4)
        sender = producer(broker.bootstrap)
        await sender.start()
        try:
            for letter in letters:
                await sender.send_and_wait(
                    "dead-letter", encode("dead_letter", letter.to_dict()), key=b"not_json"
                )
        finally:
            await sender.stop()

    asyncio.run(letters_in())
    dead, raw = tmp_path / "dead.jsonl", tmp_path / "raw.jsonl"
    run("capture", "dead-letter", "--out", str(dead))
    run("replay", str(dead), "--no-mark")
    run("capture", "alerts-raw", "--out", str(raw))
    _, back = read_capture(raw)
    assert sorted((r.partition, r.key, r.value, r.headers) for r in back) == sorted(
        (lt.partition, lt.key, lt.payload, (("origin", lt.headers[0].value),)) for lt in letters
    )
    assert os.path.getsize(raw) > 0


def test_pacing_and_looping(broker, tmp_path: Path) -> None:
    first = tmp_path / "first.jsonl"
    run("capture", "source", "--out", str(first))
    meta, captured = read_capture(first)
    started = time.monotonic()
    run("replay", str(first), "--to", "copy", "--rate", "200/s")  # 60 records: >= 0.295 s
    assert time.monotonic() - started >= 0.29
    started = time.monotonic()
    run("replay", str(first), "--to", "copy", "--speed", "100x")  # 59 s of gaps: >= 0.59 s
    assert time.monotonic() - started >= 0.58
    looped = asyncio.run(
        replay(broker.bootstrap, meta, captured, ReplayRequest(to="copy", loop=True, max_loops=2))
    )
    assert (looped.records, looped.passes) == (120, 2)


def test_send_goes_to_the_prefixed_raw_topic(broker, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PIPEMEDIC_TOPIC_PREFIX", "shadow-")
    asyncio.run(create_topics(broker.bootstrap, ["shadow-alerts-raw"], 4))
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text('{"n": 1}\n{"n": 2}\n')
    assert cli.main(["send", str(alerts)]) == 0
    out = tmp_path / "shadow.jsonl"
    run("capture", "shadow-alerts-raw", "--out", str(out))
    _, captured = read_capture(out)
    assert sorted(r.value for r in captured) == [b'{"n": 1}', b'{"n": 2}']
