"""``pipemedic capture``: record what a topic carried, losslessly, into a JSONL file.

The first line describes the capture (``{"pipemedic_capture": {...}}``: its id, the topic, the
partitions with the offsets read and when); every other line is one record: partition, offset,
timestamp, key, value and headers. Bytes are kept exactly: text that is UTF-8 is written as a
string, anything else as ``{"b64": "..."}``, so a capture of Avro, of alerts or of garbage
replays byte for byte (:mod:`pipemedic.replay`).

The end of each partition is fixed when the capture starts, so it stops by itself on a topic
that keeps growing. End offsets come from a fetch's high watermark, not ListOffsets: the
embedded Tansu broker answers ListOffsets too low after multi-record batches
(:func:`pipemedic.tansu.true_end_offsets`); on Kafka the two agree.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from pipemedic import kafka

META_KEY = "pipemedic_capture"
PROGRESS_EVERY = 500  # records between progress updates: the bar costs nothing per record


class CaptureError(ValueError):
    """A capture file or request that cannot be used (told in one line)."""


# --- the file format -------------------------------------------------------------------


def encode_bytes(data: bytes | None) -> str | dict[str, str] | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def decode_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        return base64.b64decode(value["b64"])
    raise CaptureError(f"not a captured byte string: {value!r:.80}")


@dataclass(frozen=True)
class Captured:
    """One record as a topic carried it."""

    partition: int
    offset: int
    timestamp: int  # epoch ms
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def to_line(self) -> bytes:
        return orjson.dumps(
            {
                "partition": self.partition,
                "offset": self.offset,
                "timestamp": self.timestamp,
                "key": encode_bytes(self.key),
                "value": encode_bytes(self.value),
                "headers": [[k, encode_bytes(v)] for k, v in self.headers],
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Captured:
        return cls(
            partition=int(data.get("partition", 0)),
            offset=int(data.get("offset", -1)),
            timestamp=int(data.get("timestamp") or 0),
            key=decode_bytes(data.get("key")),
            value=decode_bytes(data.get("value")),
            headers=tuple((str(k), decode_bytes(v) or b"") for k, v in data.get("headers") or ()),
        )


@dataclass
class CaptureMeta:
    capture_id: str
    topic: str
    started_at: int  # epoch ms
    starts: dict[int, int] = field(default_factory=dict)  # partition -> first offset read
    ends: dict[int, int] = field(default_factory=dict)  # partition -> end offset at start

    def to_line(self) -> bytes:
        return orjson.dumps(
            {
                META_KEY: {
                    "id": self.capture_id,
                    "topic": self.topic,
                    "started_at": self.started_at,
                    "starts": {str(p): o for p, o in self.starts.items()},
                    "ends": {str(p): o for p, o in self.ends.items()},
                }
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaptureMeta:
        return cls(
            capture_id=str(data.get("id", "")),
            topic=str(data.get("topic", "")),
            started_at=int(data.get("started_at", 0)),
            starts={int(p): int(o) for p, o in (data.get("starts") or {}).items()},
            ends={int(p): int(o) for p, o in (data.get("ends") or {}).items()},
        )


_AGO = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms from ISO-8601 (UTC unless it says), epoch ms, or an age: ``30m``, ``2h``, ``7d``."""
    import datetime as dt

    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in _AGO:
        return now_ms - int(text[:-1]) * _AGO[text[-1]] * 1000
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CaptureError(
            f"not a time: {text!r} (ISO-8601, epoch ms, or an age like 30m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def read_capture(path: Path) -> tuple[CaptureMeta, list[Captured]]:
    """The capture's description and its records, in file order. A file of bare records (no
    description line) gets an id from its name."""
    meta = CaptureMeta(capture_id=Path(path).stem, topic="", started_at=0)
    records = []
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                if META_KEY in data:
                    meta = CaptureMeta.from_json(data[META_KEY])
                else:
                    records.append(Captured.from_json(data))
            except (orjson.JSONDecodeError, CaptureError, TypeError, ValueError) as exc:
                raise CaptureError(f"{path}:{number}: not a captured record ({exc})") from None
    return meta, records


# --- capturing -------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureRequest:
    topic: str
    from_beginning: bool = False
    since_ms: int | None = None  # records at or after this time
    until_ms: int | None = None  # records at or before this time
    limit: int | None = None
    partition: int | None = None


@dataclass
class CaptureResult:
    meta: CaptureMeta
    records: int = 0
    skipped: int = 0  # outside --since/--until
    elapsed_s: float = 0.0

    def as_json(self, out: Path) -> dict[str, Any]:
        return {
            "capture_id": self.meta.capture_id,
            "topic": self.meta.topic,
            "file": str(out),
            "records": self.records,
            "skipped": self.skipped,
            "partitions": {
                str(p): {"from": self.meta.starts.get(p, 0), "end": e}
                for p, e in sorted(self.meta.ends.items())
            },
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.records / self.elapsed_s, 1) if self.elapsed_s else 0.0,
        }


Progress = Callable[[int, int], None]  # (records done, records expected)


async def capture(
    broker: str | kafka.ClientOptions,
    request: CaptureRequest,
    out: IO[bytes],
    *,
    progress: Progress | None = None,
    now_ms: int | None = None,
) -> CaptureResult:
    """Write the records of ``request.topic`` to ``out`` up to the end offsets it finds at
    start; ``progress`` hears (done, expected) now and then."""
    from aiokafka.structs import TopicPartition

    from pipemedic.tansu import true_end_offsets

    started = time.monotonic()
    meta = CaptureMeta(
        capture_id=uuid.uuid4().hex[:12],
        topic=request.topic,
        started_at=now_ms if now_ms is not None else int(time.time() * 1000),
    )
    result = CaptureResult(meta)
    consumer = kafka.consumer(
        broker,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        if request.topic not in await consumer.topics():
            raise CaptureError(f"no topic {request.topic!r} on the broker")
        partitions = sorted(consumer.partitions_for_topic(request.topic) or ())
        if request.partition is not None:
            if request.partition not in partitions:
                raise CaptureError(
                    f"{request.topic} has no partition {request.partition} "
                    f"(it has {len(partitions)})"
                )
            partitions = [request.partition]
        tps = [TopicPartition(request.topic, p) for p in partitions]
        ends = await true_end_offsets(broker, await consumer.end_offsets(tps))
        starts = await _start_offsets(consumer, tps, request)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        meta.starts = {tp.partition: starts[tp] for tp in tps}
        meta.ends = {tp.partition: ends[tp] for tp in tps}
        out.write(meta.to_line() + b"\n")
        expected = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        if request.limit is not None:
            expected = min(expected, request.limit)
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        seen = 0
        if progress:
            progress(0, expected)
        while pending and (request.limit is None or result.records < request.limit):
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        break
                    seen += 1
                    if not _wanted(message.timestamp, request):
                        result.skipped += 1
                        continue
                    out.write(_line(message) + b"\n")
                    result.records += 1
                    if request.limit is not None and result.records >= request.limit:
                        break
                    if progress and result.records % PROGRESS_EVERY == 0:
                        progress(result.records, expected)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        if progress:
            progress(result.records, result.records)
    finally:
        await consumer.stop()
    result.elapsed_s = time.monotonic() - started
    return result


async def _start_offsets(consumer: Any, tps: list[Any], request: CaptureRequest) -> dict[Any, int]:
    begins = await consumer.beginning_offsets(tps)
    if request.since_ms is None:
        return dict(begins)
    # a hint only: records before --since are still filtered one by one
    found = await consumer.offsets_for_times({tp: request.since_ms for tp in tps})
    return {tp: max(begins[tp], found[tp].offset) if found.get(tp) else begins[tp] for tp in tps}


def _wanted(timestamp: int, request: CaptureRequest) -> bool:
    if request.since_ms is not None and timestamp < request.since_ms:
        return False
    return request.until_ms is None or timestamp <= request.until_ms


def _line(message: Any) -> bytes:
    """A record's line, as :meth:`Captured.to_line` writes it (without building one: this is
    the per-record cost of a capture)."""
    headers = message.headers
    return orjson.dumps(
        {
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp,
            "key": encode_bytes(message.key),
            "value": encode_bytes(message.value),
            "headers": [[k, encode_bytes(v or b"")] for k, v in headers] if headers else [],
        }
    )
