"""``pipemedic replay``: produce a capture back, keys, headers and order per partition kept.

Each record goes to the partition it was captured from when the target topic has it (else
its key picks one, as the producer would), in file order, so the order within a partition is
the captured one. Pacing: as fast as the broker takes them (``--max``, the default), a fixed
rate, or the captured gaps sped up (``--speed 10``). Times: the broker's (default), the
captured ones (``--keep-times``), or shifted so the capture ends now, payload times included
(``--shift-times-to-now``, :mod:`streams.policy.retime`).

Every record carries ``pipemedic-replay: <capture id>`` unless ``mark=False``: a pipeline
that ingests it only observes (:mod:`streams.policy.replays`). A capture of the dead-letter
topic is a *redrive*: each letter's original payload, key and headers go back to the topic
it came from (``--to`` overrides), so messages that failed before a fix are tried again.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipemedic import kafka
from pipemedic.capture import Captured, CaptureError, CaptureMeta
from streams.policy import routing
from streams.policy.replays import with_mark
from streams.policy.retime import shift_times, shift_to_now

TIMES = ("broker", "keep", "shift")
PROGRESS_EVERY = 1000
IN_FLIGHT = 20_000  # deliveries awaited in chunks: memory stays flat over a long replay


@dataclass(frozen=True)
class ReplayRequest:
    to: str | None = None  # target topic (default: the captured one, or a letter's origin)
    rate: float | None = None  # records per second
    speed: float | None = None  # times the captured pace
    times: str = "broker"  # broker | keep | shift
    loop: bool = False
    mark: bool = True
    redrive: bool | None = None  # None: when the capture is of a dead-letter topic
    max_loops: int | None = None  # with loop: stop after this many passes (tests, benches)


@dataclass
class ReplayResult:
    records: int = 0
    passes: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # dead letters that did not decode
    elapsed_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "passes": self.passes,
            "by_topic": self.by_topic,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.records / self.elapsed_s, 1) if self.elapsed_s else 0.0,
        }


@dataclass(frozen=True)
class Outgoing:
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int  # as captured, epoch ms


Progress = Callable[[int, int], None]


def is_dead_letter_capture(meta: CaptureMeta) -> bool:
    return meta.topic.endswith(routing.DEAD_LETTER)


def plan(meta: CaptureMeta, records: Sequence[Captured], request: ReplayRequest) -> list[Outgoing]:
    """What each captured record becomes on the way out, before pacing and times."""
    redrive = is_dead_letter_capture(meta) if request.redrive is None else request.redrive
    target = request.to or meta.topic
    if not target and not redrive:
        raise CaptureError("the capture names no topic: say where with --to")
    out = []
    for record in records:
        if redrive:
            letter = _letter(record.value or b"")
            if letter is None:
                continue
            headers = tuple((h["key"], h["value"]) for h in letter.get("headers") or ())
            out.append(
                Outgoing(
                    topic=request.to or letter["topic"],
                    partition=letter["partition"],
                    key=letter.get("key"),
                    value=letter["payload"],
                    headers=headers,
                    timestamp=record.timestamp,
                )
            )
        else:
            out.append(
                Outgoing(
                    target,
                    record.partition,
                    record.key,
                    record.value,
                    record.headers,
                    record.timestamp,
                )
            )
    return out


def _letter(value: bytes) -> dict[str, Any] | None:
    """A dead letter, also one written before letters kept their key and headers."""
    import fastavro

    from streams.codecs import Undecodable, decode, parsed_schemas

    try:
        return decode("dead_letter", value)
    except Undecodable:
        pass
    current = parsed_schemas()["dead_letter"]
    legacy = {**current, "fields": [f for f in current["fields"] if f["name"] not in _NEW]}
    try:
        return fastavro.schemaless_reader(io.BytesIO(value), legacy)
    except Exception:  # not a dead letter at all
        return None


_NEW = frozenset({"key", "headers"})


async def replay(
    broker: str | kafka.ClientOptions,
    meta: CaptureMeta,
    records: Sequence[Captured],
    request: ReplayRequest,
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> ReplayResult:
    outgoing = plan(meta, records, request)
    result = ReplayResult(skipped=len(records) - len(outgoing))
    started = time.monotonic()
    producer = kafka.producer(
        broker, linger_ms=5, max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        partitions = {t: await producer.partitions_for(t) for t in {o.topic for o in outgoing}}
        while True:
            await _one_pass(producer, outgoing, partitions, request, meta, result, progress, clock)
            result.passes += 1
            if not request.loop or (request.max_loops and result.passes >= request.max_loops):
                break
        await producer.flush()
    finally:
        await producer.stop()
    result.elapsed_s = time.monotonic() - started
    return result


async def _one_pass(
    producer: Any,
    outgoing: list[Outgoing],
    partitions: dict[str, Any],
    request: ReplayRequest,
    meta: CaptureMeta,
    result: ReplayResult,
    progress: Progress | None,
    clock: Callable[[], float],
) -> None:
    shift = 0
    if request.times == "shift":
        shift = shift_to_now((o.timestamp for o in outgoing), int(clock() * 1000))
    first_ts = min((o.timestamp for o in outgoing if o.timestamp > 0), default=0)
    known = {topic: set(found or ()) for topic, found in partitions.items()}
    total = len(outgoing)
    if progress:
        progress(0, total)
    batched = [o for o in outgoing if o.partition in known[o.topic]]
    paced = bool(request.rate or request.speed)
    if paced or len(batched) != total:  # one by one: pacing, or the producer picks partitions
        await _send_each(producer, outgoing, known, request, meta, shift, first_ts, progress)
    else:
        await _send_batches(producer, outgoing, request, meta, shift, progress)
    for item in outgoing:
        result.by_topic[item.topic] = result.by_topic.get(item.topic, 0) + 1
    result.records += total
    if progress:
        progress(total, total)


def _prepared(
    item: Outgoing, request: ReplayRequest, meta: CaptureMeta, shift: int
) -> tuple[bytes | None, int | None, list[tuple[str, bytes]]]:
    """(value, timestamp, headers) as ``item`` goes out."""
    value, timestamp = item.value, None
    if request.times == "keep":
        timestamp = item.timestamp
    elif request.times == "shift":
        timestamp = item.timestamp + shift if item.timestamp > 0 else None
        value = shift_times(value, shift) if value is not None else None
    headers = with_mark(item.headers, meta.capture_id) if request.mark else item.headers
    return value, timestamp, list(headers)


async def _send_batches(
    producer: Any,
    outgoing: list[Outgoing],
    request: ReplayRequest,
    meta: CaptureMeta,
    shift: int,
    progress: Progress | None,
) -> None:
    """As fast as the broker takes them: full batches per partition, in file order (aiokafka's
    ``create_batch``/``send_batch``; a partition's batches go out one after another)."""
    open_batches: dict[tuple[str, int], Any] = {}
    pending: list[Any] = []
    for index, item in enumerate(outgoing):
        place = (item.topic, item.partition)
        value, timestamp, headers = _prepared(item, request, meta, shift)
        batch = open_batches.get(place)
        if batch is None:
            batch = open_batches[place] = producer.create_batch()
        if batch.append(key=item.key, value=value, timestamp=timestamp, headers=headers) is None:
            pending.append(await producer.send_batch(batch, place[0], partition=place[1]))
            batch = open_batches[place] = producer.create_batch()
            if (
                batch.append(key=item.key, value=value, timestamp=timestamp, headers=headers)
                is None
            ):
                raise CaptureError(f"a record of {len(value or b'')} bytes exceeds a batch")
        if progress and (index + 1) % PROGRESS_EVERY == 0:
            progress(index + 1, len(outgoing))
    for (topic, partition), batch in open_batches.items():
        if batch.record_count():
            pending.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*pending)


async def _send_each(
    producer: Any,
    outgoing: list[Outgoing],
    known: dict[str, set[int]],
    request: ReplayRequest,
    meta: CaptureMeta,
    shift: int,
    first_ts: int,
    progress: Progress | None,
) -> None:
    pace_from = time.monotonic()
    pending: list[Any] = []
    for index, item in enumerate(outgoing):
        due = _due_s(index, item, first_ts, request)
        if due is not None:
            wait = pace_from + due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        value, timestamp, headers = _prepared(item, request, meta, shift)
        partition = item.partition if item.partition in known[item.topic] else None
        pending.append(
            await producer.send(
                item.topic,
                value,
                key=item.key,
                partition=partition,
                timestamp_ms=timestamp,
                headers=headers,
            )
        )
        if len(pending) >= IN_FLIGHT:
            await asyncio.gather(*pending)
            pending.clear()
        if progress and (index + 1) % PROGRESS_EVERY == 0:
            progress(index + 1, len(outgoing))
    await asyncio.gather(*pending)


def _due_s(index: int, item: Outgoing, first_ts: int, request: ReplayRequest) -> float | None:
    """Seconds after the pass began that ``item`` is due; None: as soon as possible."""
    if request.rate:
        return index / request.rate
    if request.speed and item.timestamp > 0 and first_ts:
        return max(0.0, (item.timestamp - first_ts) / 1000 / request.speed)
    return None
