"""Ingest-path benchmark: normalise + classify + dedup + chain on the embedded broker.

    python bench/ingest.py [--alerts 8000] [--batches 100] [--runs-per-batch 50]
                           [--mode observe|automatic] [--faust-hops 3]
                           [--state-writes-per-run 2] [--profile] [--keep]

Two phases, each on a fresh stack (Tansu broker, simulator, topics). In a phase the same
messages are pre-loaded once into ``alerts-raw`` and then consumed by each pass in turn,
never two at once:

1. **raw** - an aiokafka consumer (own group) -> producer pass-through in this process: the
   physical limit of broker and client here.
2. **faust** - ``bench/passthrough_worker.py``, a child process whose one agent forwards each
   message unchanged; its app comes from ``streams.app.create_app`` with pipemedic's own
   settings (broker, session, timeouts): the framework's floor. ``faust-3hop`` (diagnostic,
   ``--faust-hops``) chains three such agents through topics, the shape of pipemedic's
   ingest -> dedup -> chains. ``faust-state`` (diagnostic, ``--state-writes-per-run``) is
   one such agent that also writes 2 Faust table keys per new run, as the issue's state
   needs (the run's dedup entry, its chain's attempt count) - with no parsing, no Avro, no
   audit and no repartition hop: a floor no design that keeps that state in Faust tables
   can beat here.
3. **pipemedic** - a real ``pipemedic worker`` child. Every alert passes ingest (normalise +
   classify), dedup (one ``received`` or ``duplicate`` outcome row each) and, for a new
   failure, the chain stage (one ``manual``/``scheduled`` row each).
   ``--mode observe`` (default): no platform calls; each chain closes as manual (rows
   ``observed`` + ``manual``) and queues the ``manual`` action, whose executor records
   without calling anything and sends a ``resolved`` chain event the chains agent absorbs.
   ``--mode automatic``: every schedule is 900 s, so each retryable chain sends a
   ``scheduled`` row and parks its action in the 900 s delay tier (nothing executes while
   measured); the manual-classified quarter of the alerts closes as manual as above.

How a rate is timed. Start-up is excluded: each consumer starts with its topic loaded, and
a rate is ``messages / (last output - first input)``:

* raw and faust: first and last CreateTime (stamped by the producer as it appends) on their
  sink topics;
* pipemedic: first = the smallest ``first_seen_at`` of the dedup rows (the ingest agent's
  clock when it took the message), last = the largest ``at`` of any dedup or chain row (the
  decision time in dedup / chains). So a pass ends when every input has passed dedup *and*
  the chain stage.

Start-up (process start until the first output) is printed separately, with the CPU share
of worker, broker and this process over the measured span and, for pipemedic, how many
messages each topic got per input message (true end offsets after the pass). Downstream
work (manual executor, ``record`` writing outcome rows to chDB, the delay agent) shares the
worker's core while the ingest path is measured, as it would in production.

Inputs are built from ``tests/fixtures/ingest``: single alerts are the Log Alerts V2 shape
(``azure_log_alert_v2.json``) with a new pipeline run id, alert id and one of four error
texts each (gateway timeout, throttling, missing blob, renamed column: the last is
manual); batches are ADF diagnostic ``{"records": [...]}`` messages from
``adf_diagnostic_mixed_batch.json``'s failed ActivityRuns and PipelineRuns records. By
default a batch holds ``--runs-per-batch`` 50 failed runs, each with its activity *and*
pipeline failure record (as ADF emits them): 100 records, of which dedup passes 50 to the
chains and suppresses 50 as duplicates. ``--runs-per-batch 100`` makes every record a run.

Prints per phase the rates, ``ratio_vs_faust``, ``ratio_vs_raw`` and, for batches,
``records_per_s``. Bars (from the issue): single alerts ratio_vs_faust >= 0.5; batched
diagnostic logs records_per_s >= 20,000.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from common import (
    DEMO_WORLD,
    REPO,
    CpuMeter,
    Every,
    OutcomeWatch,
    PySpy,
    follow,
    hot_spots,
    produce,
    progress,
    removed_unless,
    run_dir,
    stack,
    topic_counts,
)
from passthrough_worker import hop_topics

from pipemedic.embedded import create_topics
from pipemedic.stack import DEMO_DATA
from pipemedic.worker import planned_topics
from streams.policy import routing
from streams.policy.rules import DEFAULT_SCHEDULES

FIXTURES = REPO / "tests" / "fixtures" / "ingest"
RAW_SINK = "bench-raw-sink"
FAUST_SINK = "bench-faust-sink"
PASSTHROUGH = Path(__file__).resolve().parent / "passthrough_worker.py"

ERROR_TEXTS = (  # four classifications: gateway retry, throttling, missing blob, manual column
    (
        "2108",
        "Error calling the endpoint 'https://partner.example.com/api/orders'. "
        "Response status code: 'GatewayTimeout (504)'.",
    ),
    (
        "2108",
        "Error calling the endpoint 'https://crm.example.com/accounts'. "
        "Response status code: 'TooManyRequests (429)'.",
    ),
    (
        "2200",
        "Failure happened on 'Source' side. ErrorCode=UserErrorSourceBlobNotExists,"
        "'Type=Microsoft.DataTransfer.Common.Shared.HybridDeliveryException,Message=The "
        "required Blob is missing. ContainerName: https://lake.blob.core.windows.net/landing'",
    ),
    ("2200", "ErrorCode=UserErrorColumnNameInvalid,Message=Column 'net_amount' does not exist."),
)


# ---- inputs ----------------------------------------------------------------------------------

# the fixtures name a factory outside the demo estate, whose alerts ingest records as ignored
_FIXTURE_FACTORY = re.compile(rb"(?i)myfactoryname")


def in_demo_estate(payload: bytes) -> bytes:
    return _FIXTURE_FACTORY.sub(b"adf-sales-prod", payload)


def single_alerts(count: int) -> list[bytes]:
    template = json.loads((FIXTURES / "azure_log_alert_v2.json").read_text())
    payloads = []
    fired = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    for i in range(count):
        alert = copy.deepcopy(template)
        essentials = alert["data"]["essentials"]
        essentials["alertId"] = essentials["alertId"].rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
        essentials["firedDateTime"] = fired
        code, text = ERROR_TEXTS[i % len(ERROR_TEXTS)]
        values = {
            "RunId": str(uuid.uuid4()),
            "PipelineName": f"Pipeline_{i % 50}",
            "ErrorCode": code,
            "ErrorMessage": text,
        }
        for dim in alert["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]:
            dim["value"] = values.get(dim["name"], dim["value"])
        payloads.append(in_demo_estate(json.dumps(alert).encode()))
    return payloads


def diagnostic_batches(count: int, runs_per_batch: int) -> tuple[list[bytes], int, int]:
    """``count`` batches of 100 failure records; returns (payloads, records, distinct runs)."""
    records = json.loads((FIXTURES / "adf_diagnostic_mixed_batch.json").read_text())["records"]
    activity, pipeline = (copy.deepcopy(r) for r in records[:2])
    assert activity["category"] == "ActivityRuns" and pipeline["category"] == "PipelineRuns"
    per_run = 100 // runs_per_batch  # 1: one record per run, 2: activity + pipeline record
    payloads, total, runs = [], 0, 0
    for b in range(count):
        batch = []
        for r in range(runs_per_batch):
            run_id = str(uuid.uuid4())
            name = f"Load_{(b * runs_per_batch + r) % 50}"
            act = dict(
                activity, pipelineRunId=run_id, activityRunId=str(uuid.uuid4()), pipelineName=name
            )
            pipe = dict(pipeline, runId=run_id, pipelineName=name, operationName=f"{name} - Failed")
            if per_run == 2:
                batch += [act, pipe]
            else:
                batch.append(act if r % 2 else pipe)
        payloads.append(in_demo_estate(json.dumps({"records": batch}).encode()))
        total += len(batch)
        runs += runs_per_batch
    return payloads, total, runs


def estate_mix(count: int, failed_per_message: int = 3) -> tuple[list[bytes], int, int]:
    """``count`` messages of 100 ADF diagnostic records as an estate's diagnostic settings
    stream them: activity, pipeline and trigger runs that are queued, in progress or
    succeeded, and ``failed_per_message`` failures of distinct runs. Returns (payloads,
    records, failures)."""
    records = json.loads((FIXTURES / "adf_diagnostic_mixed_batch.json").read_text())["records"]
    activity, pipeline, trigger = (copy.deepcopy(r) for r in records[:3])
    assert trigger["category"] == "TriggerRuns"
    quiet = (("Queued", "Informational"), ("InProgress", "Informational"))
    payloads, failures = [], 0
    for m in range(count):
        batch = []
        for r in range(100):
            run_id, name = str(uuid.uuid4()), f"Load_{(m * 100 + r) % 200}"
            if r < failed_per_message:
                batch.append(
                    dict(
                        pipeline, runId=run_id, pipelineName=name, operationName=f"{name} - Failed"
                    )
                )
                failures += 1
                continue
            kind = r % 10
            if kind == 0:
                batch.append(dict(trigger, triggerId=run_id))
                continue
            status, level = quiet[r % 2] if kind in (1, 2) else ("Succeeded", "Informational")
            if kind < 5:
                record = dict(pipeline, runId=run_id, pipelineName=name, status=status)
            else:
                record = dict(
                    activity,
                    pipelineRunId=run_id,
                    activityRunId=str(uuid.uuid4()),
                    pipelineName=name,
                    status=status,
                )
                record.pop("error", None)
            record.update(level=level, operationName=f"{name} - {status}")
            batch.append(record)
        payloads.append(in_demo_estate(json.dumps({"records": batch}).encode()))
    return payloads, 100 * count, failures


# ---- the three consumers ---------------------------------------------------------------------


@dataclass
class Rate:
    messages: int
    span_s: float
    startup_s: float | None = None
    cpu: str = ""
    traffic: dict[str, float] = field(default_factory=dict)  # topic -> messages per input
    pause_s: float = 0.0  # longest time between two consecutive outputs inside the span

    @property
    def per_s(self) -> float:
        return self.messages / self.span_s if self.span_s > 0 else float("inf")


def longest_pause_s(stamps: list[int]) -> float:
    """The longest gap between consecutive output times (ms): a stall inside the span (e.g.
    an idle fetch waiting out Tansu's ``fetch_max_wait_ms``) shows here."""
    ordered = sorted(stamps)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0) / 1000


async def sink_span(bootstrap: str, sink: str, expected: int, timeout_s: float) -> tuple[int, int]:
    """(first, last) CreateTime in ms of the ``expected`` messages on ``sink``."""
    stamps: list[int] = []
    ok = await follow(
        bootstrap,
        sink,
        None,
        done=lambda: len(stamps) >= expected,
        on_message=lambda m, _v: stamps.append(m.timestamp),
        timeout_s=timeout_s,
        status=lambda: f"{sink}: {len(stamps)}/{expected}",
    )
    if not ok:
        raise RuntimeError(f"{sink}: only {len(stamps)} of {expected} messages")
    return min(stamps), max(stamps)


async def raw_passthrough(
    bootstrap: str, broker_pid: int, expected: int, timeout_s: float, *, parse: bool = False
) -> Rate:
    """aiokafka in, aiokafka out; with ``parse``, each message's JSON is parsed on the way."""
    consumer = AIOKafkaConsumer(
        routing.RAW,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    meter = CpuMeter({"broker": broker_pid, "bench (the pass-through)": os.getpid()})
    forwarded, pending = 0, []
    deadline = time.monotonic() + timeout_s
    tick = Every()
    try:
        while forwarded < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            if batches and not pending:
                meter.start()
            for messages in batches.values():
                for m in messages:
                    if parse:
                        json.loads(m.value)
                    pending.append(await producer.send(RAW_SINK, m.value, key=m.key))
            forwarded = len(pending)
            if tick():
                progress(f"  raw pass-through {forwarded}/{expected}")
        await asyncio.gather(*pending)
        meter.stop()
    finally:
        await producer.stop()
        await consumer.stop()
    first, last = await sink_span(bootstrap, RAW_SINK, expected, 60)
    return Rate(expected, (last - first) / 1000, cpu=meter.line())


def faust_passthrough(s, expected: int, timeout_s: float, hops: int = 1, writes: int = 0) -> Rate:
    settings = s.settings.model_copy(
        update={"app_id": f"bench-faust-{uuid.uuid4().hex[:8]}", "web_port": _free_port()}
    )
    sink = sink_for(hops, writes)
    if sink != FAUST_SINK:
        asyncio.run(create_topics(s.bootstrap, [*hop_topics(hops), sink], s.settings.partitions))
    started_ms = time.time() * 1000
    child = s.start_script(
        PASSTHROUGH,
        f"faust-passthrough-{hops}" + ("-state" if writes else ""),
        settings,
        BENCH_SOURCE=routing.RAW,
        BENCH_SINK=sink,
        BENCH_HOPS=str(hops),
        BENCH_WRITES=str(writes),
    )
    meter = CpuMeter(
        {"faust worker": child.pid, "broker": s.broker.process.pid, "bench": os.getpid()}
    )
    try:
        first, last, pause = asyncio.run(
            _faust_sink(s.bootstrap, sink, expected, timeout_s, child, meter)
        )
    finally:
        s.stop_children()
    rate = Rate(expected, (last - first) / 1000, (first - started_ms) / 1000, meter.line())
    rate.pause_s = pause
    return rate


def sink_for(hops: int, writes: int = 0) -> str:
    if writes:
        return f"{FAUST_SINK}-state"
    return FAUST_SINK if hops == 1 else f"{FAUST_SINK}-{hops}"


def state_writes(args: argparse.Namespace, new_runs: int, messages: int) -> int:
    """Table writes per input message for the ``faust-state`` floor."""
    return round(args.state_writes_per_run * new_runs / messages)


async def _faust_sink(
    bootstrap: str, sink: str, expected: int, timeout_s: float, child, meter: CpuMeter
) -> tuple[int, int, float]:
    stamps: list[int] = []

    def seen(message) -> None:
        if not stamps:
            meter.start()
        stamps.append(message.timestamp)
        if len(stamps) == expected:
            meter.stop()

    ok = await follow(
        bootstrap,
        sink,
        None,
        done=lambda: len(stamps) >= expected,
        on_message=lambda m, _v: seen(m),
        timeout_s=timeout_s,
        alive=lambda: child.poll() is None,
        status=lambda: f"bare faust forwarded {len(stamps)}/{expected}",
    )
    if not ok:
        raise RuntimeError(f"bare Faust forwarded only {len(stamps)} of {expected}")
    return min(stamps), max(stamps), longest_pause_s(stamps)


def pipemedic_pass(
    s,
    messages: int,
    records: int,
    new_runs: int,
    timeout_s: float,
    profile: bool = False,
    workers: int = 1,
) -> Rate:
    """``workers``: worker processes in one consumer group (each with its own web port and
    data folder: chDB has one owner per folder); the rate is timed on the outcomes topic."""
    watch = OutcomeWatch()
    decided: list[int] = []  # decision times of the dedup rows
    started_ms = time.time() * 1000
    worker = s.start_worker("pipemedic-worker")
    others = [
        s.start_worker(
            f"pipemedic-worker-{n}",
            PIPEMEDIC_DATA_DIR=str(s.dir / f"worker-{n}-data"),
            PIPEMEDIC_WEB_PORT=str(_free_port()),
        )
        for n in range(2, workers + 1)
    ]
    spy: PySpy | None = None  # started with the first row: start-up is left out
    meter = CpuMeter(
        {
            "pipemedic worker": worker.process.pid,
            **{f"worker {n}": w.process.pid for n, w in enumerate(others, start=2)},
            "broker": s.broker.process.pid,
            "bench": os.getpid(),
        }
    )

    def chain_rows() -> int:  # one per new run: observe closes it manual, automatic schedules
        return sum(watch.states[k] for k in ("manual", "scheduled", "gave_up"))

    def done() -> bool:
        dedup = watch.states["received"] + watch.states["duplicate"]
        finished = dedup >= records and chain_rows() >= new_runs
        if finished and not meter.used:
            meter.stop()
        return finished

    def see(row) -> None:
        nonlocal spy
        if not watch.states:
            meter.start()
            if profile:
                spy = PySpy(worker.process.pid, s.dir / "pipemedic-worker.pyspy.txt")
        watch.see(row)
        if row["state"] in ("received", "duplicate"):
            decided.append(row["at"])

    def status() -> str:
        st = watch.states
        return (
            f"pipemedic: dedup rows {st['received'] + st['duplicate']}/{records}, chain rows "
            f"{chain_rows()}/{new_runs}, dead letters {st['dead_letter']}"
        )

    try:
        ok = asyncio.run(
            follow(
                s.bootstrap,
                routing.OUTCOMES,
                "outcome",
                done=done,
                on_message=lambda _m, row: see(row),
                timeout_s=timeout_s,
                alive=lambda: worker.alive and all(w.alive for w in others),
                log=worker.log_path,
                status=status,
            )
        )
    finally:
        if spy is not None:
            progress(
                f"py-spy profile of the worker (from its first row on):\n{hot_spots(spy.stop())}"
            )
        # killed, not stopped: nothing after this needs the worker's sink flushed, so a
        # graceful stop would only add time
        s.kill_children()
    if not ok:
        raise RuntimeError(f"pipemedic did not finish: {status()}; see {worker.log_path}")
    if watch.states["dead_letter"]:
        progress(f"  WARNING: {watch.states['dead_letter']} dead letters")
    first = watch.min_first_seen
    last = max(
        watch.last_at.get(k, 0)
        for k in ("received", "duplicate", "observed", "manual", "scheduled", "gave_up")
    )
    rate = Rate(messages, (last - first) / 1000, (first - started_ms) / 1000, meter.line())
    rate.pause_s = longest_pause_s(decided)
    return rate


def _free_port() -> int:
    from pipemedic.embedded import free_port

    return free_port()


# ---- a phase ---------------------------------------------------------------------------------


def phase(
    name: str,
    directory: Path,
    payloads: list[bytes],
    records: int,
    new_runs: int,
    args: argparse.Namespace,
    workers: int = 1,
) -> dict[str, Rate]:
    progress(f"== {name}: {len(payloads)} messages, {records} records, {new_runs} new runs ==")
    passes = args.only or ("raw", "faust", "pipemedic")
    if name == "estate-mix":  # the baseline: a raw consumer that parses every message
        passes = tuple(p for p in passes if p != "faust")
    overrides: dict = {"mode": args.mode}
    if args.mode == "automatic":  # every retry waits 900 s: nothing executes while measured
        rules = directory / "bench-rules.yaml"
        rules.write_text(json.dumps({"schedules": {k: [900] for k in DEFAULT_SCHEDULES}}))
        overrides["rules_file"] = rules
    # the ingest path, not people's channels: the demo estate without its notification
    # channels (else every manual chain is an HTTP delivery the floors never make)
    extras = yaml.safe_load((DEMO_DATA / "estate_extras.yaml").read_text()) or {}
    extras.pop("notifications", None)
    with stack(
        directory / name,
        DEMO_WORLD,
        extra_topics=(RAW_SINK, FAUST_SINK),
        estate_extras=extras,
        **overrides,
    ) as s:
        took = asyncio.run(produce(s.bootstrap, routing.RAW, payloads))
        mb = sum(map(len, payloads)) / 1e6
        progress(f"pre-loaded {len(payloads)} messages ({mb:.1f} MB) in {took:.1f}s")
        rates = {}
        if "raw" in passes:
            progress("raw aiokafka pass-through ...")
            rates["raw"] = asyncio.run(
                raw_passthrough(
                    s.bootstrap,
                    s.broker.process.pid,
                    len(payloads),
                    args.timeout,
                    parse=name == "estate-mix",
                )
            )
            progress(f"  raw: {rates['raw'].per_s:,.0f} msg/s")
        if "faust" in passes:
            progress("bare Faust pass-through (child process) ...")
            rates["faust"] = faust_passthrough(s, len(payloads), args.timeout)
            progress(f"  faust: {rates['faust'].per_s:,.0f} msg/s")
        if "faust" in passes and args.faust_hops > 1:
            name = f"faust-{args.faust_hops}hop"
            progress(f"bare Faust, {args.faust_hops} agents in a row (child process) ...")
            rates[name] = faust_passthrough(s, len(payloads), args.timeout, args.faust_hops)
            progress(f"  {name}: {rates[name].per_s:,.0f} msg/s")
        writes = state_writes(args, new_runs, len(payloads))
        if "faust" in passes and writes:
            progress(f"bare Faust forwarding and writing {writes} table keys per message ...")
            rates["faust-state"] = faust_passthrough(s, len(payloads), args.timeout, writes=writes)
            progress(f"  faust-state: {rates['faust-state'].per_s:,.0f} msg/s")
        if "pipemedic" in passes:
            progress(f"pipemedic, {workers} worker(s) ({args.mode} mode) ...")
            rates["pipemedic"] = pipemedic_pass(
                s, len(payloads), records, new_runs, args.timeout, args.profile, workers
            )
            progress(f"  pipemedic: {rates['pipemedic'].per_s:,.0f} msg/s")
            counts = asyncio.run(topic_counts(s.bootstrap, planned_topics(s.settings)))
            rates["pipemedic"].traffic = {t: n / len(payloads) for t, n in counts.items() if n}
    return rates


def report(title: str, rates: dict[str, Rate], records_per_message: float | None) -> None:
    print(f"== {title} ==")
    for name, rate in rates.items():
        startup = f", start-up {rate.startup_s:.1f}s (excluded)" if rate.startup_s else ""
        pause = f", longest pause {rate.pause_s:.2f}s" if rate.pause_s else ""
        print(
            f"  {name:10s} {rate.per_s:10,.0f} msg/s  ({rate.messages} msgs in "
            f"{rate.span_s:.2f}s{startup}{pause})"
        )
        if rate.cpu:
            print(f"             {rate.cpu}")
        if rate.traffic:
            produced = sum(n for t, n in rate.traffic.items() if t != routing.RAW)
            per_topic = ", ".join(f"{t} {n:.2f}" for t, n in sorted(rate.traffic.items()))
            print(
                f"             messages per input message: {per_topic}; "
                f"{produced:.1f} produced by the worker per input"
            )
    pm = rates.get("pipemedic")
    if pm and "faust" in rates:
        print(f"ratio_vs_faust: {pm.per_s / rates['faust'].per_s:.3f}")
    if pm and "raw" in rates:
        print(f"ratio_vs_raw: {pm.per_s / rates['raw'].per_s:.3f}")
    for name, rate in rates.items():
        if pm and name.startswith("faust-"):  # diagnostics: floors of a topology / of state
            print(
                f"  ratio_vs_{name.replace('-', '_')}: {pm.per_s / rate.per_s:.3f}  "
                f"(bare Faust {name} / 1 agent: {rate.per_s / rates['faust'].per_s:.3f})"
            )
    if records_per_message:
        for name, rate in rates.items():
            label = "records_per_s" if name == "pipemedic" else f"  {name} records_per_s"
            print(f"{label}: {rate.per_s * records_per_message:,.0f}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=8000, help="single alerts (0: skip)")
    parser.add_argument(
        "--batches", type=int, default=100, help="diagnostic batches of 100 records (0: skip)"
    )
    parser.add_argument(
        "--runs-per-batch",
        type=int,
        default=50,
        choices=(50, 100),
        help="50: activity + pipeline record per run; 100: every record a run",
    )
    parser.add_argument(
        "--mix",
        type=int,
        default=200,
        help="messages of 100 diagnostic records, 3%% failures, as an estate sends (0: skip)",
    )
    parser.add_argument(
        "--two-workers",
        action="store_true",
        help="also the single alerts through two pipemedic workers in one group "
        "(ratio_two_workers against one worker in this run)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per pass, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    parser.add_argument(
        "--mode",
        choices=("observe", "automatic"),
        default="observe",
        help="observe: chains close as manual and queue the manual action; "
        "automatic: chains schedule their retry into a 900 s delay tier",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the pipemedic worker and print its hot spots (stderr)",
    )
    parser.add_argument(
        "--faust-hops",
        type=int,
        default=3,
        help="also time bare Faust through this many agents in a row "
        "(pipemedic's ingest -> dedup -> chains is 3; 1: skip)",
    )
    parser.add_argument(
        "--state-writes-per-run",
        type=int,
        default=2,
        help="faust-state: bare Faust forwarding plus this many table writes per new run "
        "(2: a run's dedup entry and its chain, as pipemedic; 0: skip)",
    )
    parser.add_argument(
        "--only",
        choices=("raw", "faust", "pipemedic"),
        nargs="*",
        help="run only these passes (ratios need all three)",
    )
    args = parser.parse_args()

    directory = run_dir("ingest")
    results = []
    with removed_unless(directory, args.keep):
        if args.alerts:
            payloads = single_alerts(args.alerts)
            rates = phase("single-alerts", directory, payloads, len(payloads), len(payloads), args)
            results.append(
                (f"single alerts (Log Alerts V2), {len(payloads)} messages", rates, None)
            )
        if args.alerts and args.two_workers:  # the same alerts, on a stack of their own
            only = argparse.Namespace(**{**vars(args), "only": ["pipemedic"]})
            two = phase(
                "single-alerts-2w", directory, payloads, len(payloads), len(payloads), only, 2
            )
        if args.batches:
            payloads, records, runs = diagnostic_batches(args.batches, args.runs_per_batch)
            rates = phase("diagnostic-batches", directory, payloads, records, runs, args)
            results.append(
                (
                    f"ADF diagnostic batches, {len(payloads)} x 100 records ({runs} distinct runs)",
                    rates,
                    records / len(payloads),
                )
            )
        if args.mix:
            payloads, records, failures = estate_mix(args.mix)
            rates = phase("estate-mix", directory, payloads, failures, failures, args)
            mix = (rates, records / len(payloads))
    for title, rates, per_message in results:
        report(title, rates, per_message)
    if args.alerts and args.two_workers:
        one, both = results[0][1].get("pipemedic"), two["pipemedic"]
        print("== single alerts, two pipemedic workers in one group ==")
        print(f"  pipemedic x2 {both.per_s:10,.0f} msg/s  {both.cpu}")
        if one is not None:
            ratio = both.per_s / one.per_s
            print(f"ratio_two_workers: {ratio:.3f}")
            print(f"bar ratio_two_workers >= 1.6: {'met' if ratio >= 1.6 else 'MISSED'}")
    if args.mix:
        rates, per_message = mix
        print(f"== estate mix: {args.mix} x 100 diagnostic records, 3% failures ==")
        for name, rate in rates.items():
            print(f"  {name:10s} {rate.per_s * per_message:10,.0f} records/s  {rate.cpu}")
        if "pipemedic" in rates and "raw" in rates:
            ratio = rates["pipemedic"].per_s / rates["raw"].per_s
            print(f"mix_records_per_s: {rates['pipemedic'].per_s * per_message:,.0f}")
            print(f"mix_ratio_vs_raw: {ratio:.3f}")
            print(f"bar mix_ratio_vs_raw >= 0.5: {'met' if ratio >= 0.5 else 'MISSED'}")
    for _title, rates, per_message in results:
        pm = rates.get("pipemedic")
        if pm is None:
            continue
        if per_message is None and "faust-state" in rates:  # issue 12's failure path
            ratio = pm.per_s / rates["faust-state"].per_s
            met = ratio >= 0.75
            print(f"ratio_vs_faust_state: {ratio:.3f}")
            print(f"bar failure path ratio_vs_faust_state >= 0.75: {'met' if met else 'MISSED'}")
        elif per_message is not None:
            met = pm.per_s * per_message >= 20000
            print(f"bar batched records_per_s >= 20,000: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
