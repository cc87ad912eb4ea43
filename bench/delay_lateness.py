"""Delay-tier lateness: how late do held records fire (fire time - due time)?

    python bench/delay_lateness.py [--records 10000] [--tiers 2,5,10] [--spread-s 0,10]
                                   [--grace-s 20] [--fetch-max-wait-ms N] [--profile]

Stack: Tansu broker, simulator (unused), one real ``pipemedic worker`` child. The tier topics
come from the worker's own plan (rule schedules plus internal delays); ``transient_backoff_s``
is set to (1, 2, 3, 5, 10) so that 2, 5 and 10 s tiers exist.

Input, per phase: ``--records`` ``ActionRequest`` records with action ``manual`` (its
executor only records: no playbook is configured, so no platform call), round-robin over
``--tiers``, each with ``due_at`` = the moment it was built + its tier, routed with
``streams.policy.routing.route`` (which sets ``hop_due_at`` = ``due_at``) and keyed by chain
id, so they spread over every partition. They go to the tier topics of a running, warmed-up
worker. One phase per ``--spread-s`` value: ``0`` produces them in one burst (so all of
them are pending at once: the issue's scenario and the bar), ``10`` paces them evenly over
10 s (records keep arriving while earlier ones are held).

Measured, per record, against its ``due_at``:

* **fired**: the CreateTime of its copy on ``action-manual`` - the delay agent's forward
  (the worker's producer stamps it as it appends);
* **executed**: ``at`` of the ``resolved`` chain event the manual executor sends after
  handling it (one more hop: the action topic and the executor).

A phase ends when every record was executed, or ``--grace-s`` after the last one was due;
a record that has not fired by then is reported as never fired (with its tier, partition,
offset and the worker group's committed offset there) and counts as infinitely late.

Prints p50/p90/p99/max of each (overall and per tier), how many fired early (must be 0) or
never, the peak number pending, and ``lateness_p99_s: X`` (fired, first phase). Bar (from
the issue): p99 <= 1 s (and nothing lost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer
from common import (
    DEMO_WORLD,
    CpuMeter,
    Every,
    PySpy,
    fetch_wait_env,
    follow,
    hot_spots,
    percentile,
    progress,
    removed_unless,
    run_dir,
    stack,
)

from pipemedic.worker import load_rulebook, plan_tiers
from streams.codecs import encode_items
from streams.policy import routing
from streams.policy.model import Action, ActionRequest, Alert, Classification, Kind, Step

MANUAL_TOPIC = routing.action_topic(Action.MANUAL.value)


def manual_request(delay_s: int, now_ms: int) -> ActionRequest:
    run_id = str(uuid.uuid4())
    chain_id = f"adf|fac-bench|{run_id}"
    alert = Alert(
        alert_id=f"bench-{run_id}",
        source="adf",
        kind=Kind.PIPELINE_RUN.value,
        scope="fac-bench",
        run_id=run_id,
        pipeline="Load_Orders",
        message="bench",
        occurred_at=now_ms,
    )
    classification = Classification(
        error_type="Unknown",
        risk="high",
        action=Action.MANUAL.value,
        max_retries=0,
        backoff_s=(),
        reason="bench",
    )
    return ActionRequest(
        action_id=f"{chain_id}#1:manual",
        chain_id=chain_id,
        dedup_key=chain_id,
        action=Action.MANUAL.value,
        step=Step.EXECUTE.value,
        attempt=1,
        max_attempts=0,
        due_at=now_ms + delay_s * 1000,
        alert=alert,
        classification=classification,
        origin="bench",
        reason=f"bench {delay_s}s",
        first_seen_at=now_ms,
    )


async def produce_delayed(
    bootstrap: str, delays: list[int], tiers: tuple[int, ...], spread_s: float
) -> dict[str, tuple[int, int]]:
    """Build and send each request just in time; returns chain id -> (due_at, tier,
    partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent: dict[str, tuple[int, ...]] = {}
    pending, placed = [], []
    started = time.monotonic()
    tick = Every()
    try:
        for i, delay in enumerate(delays):
            if spread_s:
                lag = started + spread_s * i / len(delays) - time.monotonic()
                if lag > 0:
                    await asyncio.sleep(lag)
            now = int(time.time() * 1000)
            topic, routed = routing.route(manual_request(delay, now), now_ms=now, tiers=tiers)
            assert routed.tier == f"{delay}s" and routed.hop_due_at == routed.due_at, routed
            value = encode_items("action_request", [routed.to_dict()])  # a lone request
            pending.append(await producer.send(topic, value, key=routed.chain_id.encode()))
            sent[routed.chain_id] = (routed.due_at, delay)
            if len(pending) >= 1000:
                placed.extend(await asyncio.gather(*pending))
                pending.clear()
            if tick():
                progress(f"  produced {i + 1}/{len(delays)}")
        placed.extend(await asyncio.gather(*pending))
    finally:
        await producer.stop()
    for chain, meta in zip(sent, placed, strict=True):
        sent[chain] = (*sent[chain], meta.partition, meta.offset)
    return sent


async def measure(
    s,
    worker,
    delays: list[int],
    tiers: tuple[int, ...],
    spread_s: float,
    grace_s: float,
    meter: CpuMeter | None = None,
) -> dict[str, Any]:
    """Produce the records and follow them until all were executed, or until ``grace_s``
    after the last one was due: what has not fired by then is reported as never fired."""
    fired: dict[str, int] = {}
    executed: dict[str, int] = {}
    due: dict[str, tuple[int, ...]] = {}
    pending_peak = [0]
    timeout_s = spread_s + max(delays) + grace_s + 30  # and room for producing them

    def seen(message: Any, value: dict[str, Any]) -> None:
        chain = value.get("chain_id")
        if message.topic == MANUAL_TOPIC:
            fired.setdefault(chain, message.timestamp)
        elif value.get("kind") == "resolved":
            executed.setdefault(chain, value["at"])

    def overdue() -> bool:  # everything was due grace_s ago: stop waiting for stragglers
        last_due = max((d for d, *_ in due.values()), default=None)
        return last_due is not None and time.time() * 1000 > last_due + grace_s * 1000

    async def watch() -> bool:
        return await follow(
            s.bootstrap,
            {MANUAL_TOPIC: "action_request", routing.CHAIN_EVENTS: "chain_event"},
            done=lambda: bool(due) and (all(c in executed for c in due) or overdue()),
            on_message=seen,
            timeout_s=timeout_s,
            alive=lambda: worker.alive,
            log=worker.log_path,
            status=lambda: (
                f"fired {sum(c in fired for c in due)}/{len(delays)}, executed "
                f"{sum(c in executed for c in due)}, pending now "
                f"{_pending(due, fired, pending_peak)}"
            ),
        )

    took = [0.0]

    async def send() -> None:
        started = time.monotonic()
        due.update(await produce_delayed(s.bootstrap, delays, tiers, spread_s))
        took[0] = time.monotonic() - started
        _pending(due, fired, pending_peak)

    if meter:
        meter.start()
    watching = asyncio.create_task(watch())
    await send()
    await watching
    if meter:
        meter.stop()
    lost = [c for c in due if c not in fired]
    if lost:
        await _report_lost(s, due, fired)
    return {
        "due": due,
        "fired": fired,
        "executed": executed,
        "lost": len(lost),
        "pending_peak": pending_peak[0],
        "produce_s": took[0],
    }


async def _report_lost(s, due: dict[str, tuple[int, ...]], fired: dict[str, int]) -> None:
    stuck: dict[tuple[int, int], list[int]] = defaultdict(list)
    oldest: dict[tuple[int, int], int] = {}
    for chain, (due_at, tier, partition, offset) in due.items():
        if chain not in fired:
            stuck[(tier, partition)].append(offset)
            oldest[(tier, partition)] = min(oldest.get((tier, partition), due_at), due_at)
    now = time.time() * 1000
    committed = await _committed(s, set(stuck))
    for (tier, partition), offsets in sorted(stuck.items()):
        progress(
            f"  NEVER FIRED: tier {tier}s partition {partition}: {len(offsets)} records, "
            f"offsets {' '.join(map(str, sorted(offsets)[:12]))} ..., oldest due "
            f"{(now - oldest[(tier, partition)]) / 1000:.0f}s ago; the worker committed up to "
            f"{committed.get((tier, partition))}"
        )


async def _committed(s, tier_partitions: set[tuple[int, int]]) -> dict[tuple[int, int], Any]:
    """The worker group's committed offsets: past a record never fired means Faust counted it
    as done (its offset-gap bookkeeping), so not even a restart would deliver it again."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from streams.policy.backoff import tier_topic

    probe = AIOKafkaConsumer(bootstrap_servers=s.bootstrap, group_id=s.settings.app_id)
    await probe.start()
    try:
        return {
            (t, p): await probe.committed(TopicPartition(tier_topic(t), p))
            for t, p in tier_partitions
        }
    finally:
        await probe.stop()


def _pending(due: dict[str, Any], fired: dict[str, int], peak: list[int]) -> int:
    now = len(due) - sum(c in fired for c in due)
    peak[0] = max(peak[0], now)
    return now


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: none"
    return (
        f"{label}: n={len(values)} p50 {percentile(values, 50):.3f}s "
        f"p90 {percentile(values, 90):.3f}s p99 {percentile(values, 99):.3f}s "
        f"max {max(values):.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10000, help="per phase")
    parser.add_argument("--tiers", default="2,5,10", help="delays in s; each must be a tier")
    parser.add_argument(
        "--spread-s",
        default="0,10",
        help="one phase per value: pace producing over this many seconds (0: one burst)",
    )
    parser.add_argument(
        "--grace-s",
        type=float,
        default=20.0,
        help="stop waiting this long after the last record was due; the rest never fired",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the worker")
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=None,
        help="diagnostic: patch the worker's consumer fetch wait (Faust fixes "
        "1500 ms) to show how much of the lateness it causes",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    args = parser.parse_args()
    wanted = [int(t) for t in args.tiers.split(",")]
    spreads = [float(x) for x in args.spread_s.split(",") if x]

    directory = run_dir("delay")
    results = []
    with (
        removed_unless(directory, args.keep),
        stack(directory, DEMO_WORLD, transient_backoff_s=(1.0, 2.0, 3.0, 5.0, 10.0)) as s,
    ):
        tiers = plan_tiers(s.settings, load_rulebook(s.settings.rules_file)[1])
        missing = [t for t in wanted if t not in tiers]
        if missing:
            raise SystemExit(f"not tiers of this worker: {missing}; tiers are {tiers}")
        progress(f"worker tiers {tiers}; measuring {wanted}")
        worker = s.start_worker("worker", **fetch_wait_env(directory, args.fetch_max_wait_ms))
        spy = PySpy(worker.process.pid, directory / "worker.pyspy.txt") if args.profile else None
        pids = {"worker": worker.process.pid, "broker": s.broker.process.pid, "bench": os.getpid()}
        try:
            progress("warming up: one record through the smallest tier (start-up included) ...")
            warm = asyncio.run(measure(s, worker, [wanted[0]], tiers, 0, 60))
            if warm["lost"]:
                raise SystemExit("the warm-up record never fired; see the worker log")
            for spread in spreads:
                delays = [wanted[i % len(wanted)] for i in range(args.records)]
                pace = f"paced over {spread:g}s" if spread else "one burst"
                progress(f"{len(delays)} delayed manual requests, {pace} ...")
                meter = CpuMeter(pids)
                result = asyncio.run(measure(s, worker, delays, tiers, spread, args.grace_s, meter))
                results.append((spread, result, meter))
        finally:
            if spy is not None:
                progress(
                    f"py-spy profile of the worker (start-up included):\n{hot_spots(spy.stop())}"
                )
            s.stop_children()

    for n, (spread, result, meter) in enumerate(results):
        report(result, meter, wanted, spread, args.fetch_max_wait_ms, first=n == 0)


def report(
    result: dict[str, Any],
    meter: CpuMeter,
    wanted: list[int],
    spread: float,
    fetch_wait: int | None,
    *,
    first: bool,
) -> None:
    """Lateness of every record; one that never fired counts as infinitely late."""
    due, fired, executed = result["due"], result["fired"], result["executed"]
    inf = float("inf")
    late_fired = {c: (fired[c] - d) / 1000 if c in fired else inf for c, (d, *_) in due.items()}
    late_exec = {
        c: (executed[c] - d) / 1000 if c in executed else inf for c, (d, *_) in due.items()
    }
    by_tier: dict[int, list[str]] = defaultdict(list)
    for chain, (_, tier, *_) in due.items():
        by_tier[tier].append(chain)
    pace = f"paced over {spread:g}s" if spread else "produced in one burst"
    pace += f" ({result['produce_s']:.1f}s)"
    if fetch_wait:
        pace += f"; DIAGNOSTIC worker fetch_max_wait_ms {fetch_wait} (not 1500)"
    print(
        f"== delay lateness: {len(due)} manual requests over tiers {wanted}s, {pace}; "
        f"peak pending {result['pending_peak']} =="
    )
    print(f"  {meter.line()}")
    print("  " + summary("fired (forward to action-manual) - due", list(late_fired.values())))
    print("  " + summary("executed (manual executor)       - due", list(late_exec.values())))
    for tier in sorted(by_tier):
        print(f"  tier {tier:>3}s " + summary("fired", [late_fired[c] for c in by_tier[tier]]))
    early = sum(1 for v in late_fired.values() if v < 0)
    print(f"  fired before due: {early}")
    print(f"  never fired (lost): {result['lost']}")
    p99 = percentile(list(late_fired.values()), 99)
    label = "lateness_p99_s" if first else f"lateness_p99_s_{'paced' if spread else 'burst'}"
    print(f"{label}: {p99:.3f}")
    verdict = "met" if p99 <= 1.0 and not result["lost"] else "MISSED"
    print(f"bar p99 <= 1 s{'' if first else ' (this phase)'}: {verdict}")


if __name__ == "__main__":
    main()
