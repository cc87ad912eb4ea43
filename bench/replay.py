"""Replay throughput against a raw aiokafka producer, on the embedded broker, in one run.

The baseline sends the records (alert-sized JSON values, a key, one header) with a bare
``AIOKafkaProducer`` configured as replay's (linger 5 ms, 512 KiB batches), awaiting the
deliveries in chunks. ``pipemedic replay`` then sends the same records from a capture file
(reading and decoding the file included), with its progress bar drawn (forced, on stderr),
the replay header added and the captured partitions kept. Rounds alternate baseline and replay
so a slow moment of the VM hits both; each figure is the median over the rounds.
``--capture`` also times ``pipemedic capture`` of the replayed topic against a bare consumer
reading it to the end.

Prints ``records_per_s`` of each, ``ratio_vs_raw`` (replay / raw producer; bar ≥ 0.5) and
whether this run met the bar.

    python bench/replay.py [--records 100000] [--rounds 2] [--capture] [--no-progress]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipemedic.capture import Captured, CaptureMeta, CaptureRequest, capture, read_capture
from pipemedic.embedded import EmbeddedBroker, create_topics
from pipemedic.progress import progress_bar
from pipemedic.replay import ReplayRequest, replay

PARTITIONS = 4
BAR = 0.5


def payload(i: int) -> bytes:
    return json.dumps(
        {
            "schemaId": "azureMonitorCommonAlertSchema",
            "data": {
                "essentials": {
                    "alertId": f"/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/{i}",
                    "firedDateTime": "2026-11-29T02:58:24.371Z",
                    "monitoringService": "Log Alerts V2",
                },
                "alertContext": {
                    "condition": {
                        "windowStartTime": "2026-11-29T02:53:24Z",
                        "windowEndTime": "2026-11-29T02:58:24Z",
                        "allOf": [{"dimensions": [{"name": "RunId", "value": f"run-{i:08d}"}]}],
                    }
                },
            },
        }
    ).encode()


def write_capture(path: Path, records: int) -> None:
    meta = CaptureMeta(capture_id="bench", topic="bench-source", started_at=0)
    with path.open("wb") as out:
        out.write(meta.to_line() + b"\n")
        for i in range(records):
            record = Captured(
                partition=i % PARTITIONS,
                offset=i // PARTITIONS,
                timestamp=1_700_000_000_000 + i,
                key=f"adf|f|run-{i:08d}".encode(),
                value=payload(i),
                headers=(("trace", b"\x00\xff" + str(i).encode()),),
            )
            out.write(record.to_line() + b"\n")


async def raw_producer(bootstrap: str, topic: str, records: list[Captured]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for r in records:
            pending.append(
                await producer.send(
                    topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers)
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(records) / (time.monotonic() - started)


def timed_replay(bootstrap: str, path: Path, topic: str, show: bool) -> float:
    started = time.monotonic()
    meta, records = read_capture(path)
    with progress_bar(f"replay → {topic}", enabled=show, force=show) as report:
        asyncio.run(replay(bootstrap, meta, records, ReplayRequest(to=topic), progress=report))
    return len(records) / (time.monotonic() - started)


async def bare_consume(bootstrap: str, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    started, seen = time.monotonic(), 0
    try:
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            seen += sum(len(m) for m in batches.values())
    finally:
        await consumer.stop()
    return seen / (time.monotonic() - started)


def timed_capture(bootstrap: str, topic: str, out: Path, show: bool) -> tuple[float, int]:
    with progress_bar(f"capture {topic}", enabled=show, force=show) as report, out.open("wb") as f:
        result = asyncio.run(capture(bootstrap, CaptureRequest(topic), f, progress=report))
    return result.records / result.elapsed_s, result.records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--capture", action="store_true", help="also time capture")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipemedic-bench-replay-") as tmp:
        path = Path(tmp) / "capture.jsonl"
        write_capture(path, args.records)
        _, records = read_capture(path)
        with EmbeddedBroker(Path(tmp) / "broker") as broker:
            topics = [f"{kind}-{n}" for n in range(args.rounds) for kind in ("raw", "replay")]
            asyncio.run(create_topics(broker.bootstrap, topics, PARTITIONS))
            raw_rates, replay_rates, capture_rates, consume_rates = [], [], [], []
            for n in range(args.rounds):
                raw_rates.append(asyncio.run(raw_producer(broker.bootstrap, f"raw-{n}", records)))
                print(
                    f"round {n + 1}: raw producer {raw_rates[-1]:,.0f} records/s", file=sys.stderr
                )
                rate = timed_replay(broker.bootstrap, path, f"replay-{n}", not args.no_progress)
                replay_rates.append(rate)
                print(f"round {n + 1}: replay {rate:,.0f} records/s", file=sys.stderr)
                if args.capture:
                    consume_rates.append(
                        asyncio.run(bare_consume(broker.bootstrap, f"replay-{n}", len(records)))
                    )
                    rate, got = timed_capture(
                        broker.bootstrap,
                        f"replay-{n}",
                        Path(tmp) / "again.jsonl",
                        not args.no_progress,
                    )
                    assert got == len(records), (got, len(records))
                    capture_rates.append(rate)
    raw, replayed = statistics.median(raw_rates), statistics.median(replay_rates)
    ratio = replayed / raw
    print(f"records                      {args.records:,}")
    print(f"raw_producer_records_per_s   {raw:,.0f}")
    print(f"replay_records_per_s         {replayed:,.0f}")
    print(
        f"ratio_vs_raw                 {ratio:.2f}  (bar >= {BAR}: {'met' if ratio >= BAR else 'NOT met'})"
    )
    if capture_rates:
        consumed, captured = statistics.median(consume_rates), statistics.median(capture_rates)
        print(f"bare_consumer_records_per_s  {consumed:,.0f}")
        print(f"capture_records_per_s        {captured:,.0f}")
        print(f"capture_ratio_vs_consumer    {captured / consumed:.2f}")
    return 0 if ratio >= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
