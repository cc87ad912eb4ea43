"""``pipemedic demo``: the whole pipeline on the embedded stack, then a report from ClickHouse.

Starts the Tansu broker, the platform simulator and a real worker process; replays an alerts
file into the raw topic; follows the outcomes topic until every chain is final and the worker
has consumed and committed everything; stops the worker (which flushes the ClickHouse sink)
and reads the report back from chDB. Everything runs in a fresh folder under the data
directory and is stopped on the way out, whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from pipemedic.demo_notifications import told_per_chain
from pipemedic.reporting import read_report
from pipemedic.runtime import RecordTail
from pipemedic.stack import DEMO_DATA, EmbeddedStack
from pipemedic.tansu import true_end_offsets
from pipemedic.worker import planned_topics
from streams.policy import routing
from streams.policy.model import FINAL_STATES
from streams.policy.notices import SIDE_STATES
from streams.settings import Settings, default_data_dir

FINAL = {s.value for s in FINAL_STATES}
_NOT_CHAIN_STATES = {"duplicate", *SIDE_STATES}  # a duplicate, or telling people
QUIET_S = 1.5  # and every offset committed: nothing is in flight


@dataclass
class DemoResult:
    complete: bool
    alerts_sent: int
    elapsed_s: float
    by_error_type: list[dict[str, Any]] = field(default_factory=list)
    kpis: dict[str, Any] = field(default_factory=dict)
    chains: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: int = 0
    run_dir: str = ""

    def summary(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE (timed out)"
        return (
            f"{self.alerts_sent} alerts, {len(self.chains)} chains, {self.dead_letters} dead "
            f"letters, {self.elapsed_s:.0f}s, {state}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "alerts_sent": self.alerts_sent,
            "elapsed_s": round(self.elapsed_s, 1),
            "dead_letters": self.dead_letters,
            "by_error_type": self.by_error_type,
            "kpis": self.kpis,
            "chains": self.chains,
        }


def run_demo(
    *,
    alerts: Path | None = None,
    world: Path | None = None,
    timeout_s: float = 300.0,
    keep: bool = False,
    progress: bool = True,
) -> DemoResult:
    alerts = alerts or DEMO_DATA / "alerts.jsonl"
    world = world or DEMO_DATA / "world.yaml"
    lines = [line.encode() for line in Path(alerts).read_text().splitlines() if line.strip()]
    base = Settings().data_dir if "PIPEMEDIC_DATA_DIR" in os.environ else default_data_dir()
    run_dir = base / "runs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    console = Console(stderr=True, quiet=not progress)
    started = time.monotonic()
    try:
        with EmbeddedStack(run_dir, world) as stack:
            console.print(
                f"[bold]pipemedic demo[/] broker {stack.bootstrap} · simulator "
                f"{stack.simulator.url} · worker log {stack.worker.log_path}"
            )
            stack.send_raw(lines)
            watch = asyncio.run(watch_until_settled(stack, timeout_s, console))
            stack.stop_worker()  # a graceful stop flushes the ClickHouse sink
        by_type, kpis, chains = read_report(stack.settings)
        told = told_per_chain(watch.rows)  # per chain: channel, transition, delivered
        chains = [{**chain, "notifications": told.get(chain["chain_id"], [])} for chain in chains]
        return DemoResult(
            complete=watch.settled,
            alerts_sent=len(lines),
            elapsed_s=time.monotonic() - started,
            by_error_type=by_type,
            kpis=kpis,
            chains=chains,
            dead_letters=watch.states["dead_letter"],
            run_dir=str(run_dir),
        )
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class Watch:
    chains: dict[str, str] = field(default_factory=dict)  # chain id -> last state
    states: Counter[str] = field(default_factory=Counter)
    rows: list[dict[str, Any]] = field(default_factory=list)  # every outcome seen, in order
    last_change: float = field(default_factory=time.monotonic)
    settled: bool = False

    def see(self, outcome: dict[str, Any]) -> None:
        self.rows.append(outcome)
        self.states[outcome["state"]] += 1
        if outcome["chain_id"] and outcome["state"] not in _NOT_CHAIN_STATES:
            current = self.chains.get(outcome["chain_id"])
            if current not in FINAL or outcome["state"] in FINAL:
                self.chains[outcome["chain_id"]] = outcome["state"]
        self.last_change = time.monotonic()

    @property
    def open_chains(self) -> int:
        return sum(1 for state in self.chains.values() if state not in FINAL)

    def line(self) -> str:
        return (
            f"chains {len(self.chains)} (open {self.open_chains}) · received {self.states['received']}"
            f" · duplicates {self.states['duplicate']} · executed {self.states['executed']}"
            f" · resolved {self.states['resolved']} · dead letters {self.states['dead_letter']}"
        )


async def watch_until_settled(
    stack: EmbeddedStack, timeout_s: float, console: Console | None = None
) -> Watch:
    """Follow the outcomes until every chain is final, nothing moved for a while and the
    worker has committed everything it read."""
    console = console or Console(stderr=True, quiet=True)
    watch = Watch()
    # every topic the worker consumes: not its changelogs, not the dead letters (kept for people)
    topics = [
        t
        for t in planned_topics(stack.settings)
        if not t.endswith("-changelog") and t != routing.DEAD_LETTER
    ]
    deadline = time.monotonic() + timeout_s
    async with RecordTail(stack.bootstrap, routing.OUTCOMES, "outcome") as tail:
        with console.status(watch.line()) as status:
            while time.monotonic() < deadline and stack.worker is not None and stack.worker.alive:
                for outcome in await tail.poll(500):
                    watch.see(outcome)
                status.update(watch.line())
                quiet = time.monotonic() - watch.last_change >= QUIET_S
                if (
                    watch.states
                    and not watch.open_chains
                    and quiet
                    and await _caught_up(
                        stack.bootstrap, stack.settings.app_id, topics, stack.settings.partitions
                    )
                ):
                    watch.settled = True
                    break
    console.print(watch.line())
    return watch


async def _caught_up(bootstrap: str, group: str, topics: list[str], partitions: int) -> bool:
    """Has the worker's consumer group committed everything on every topic it reads?"""
    return not await consumer_lag(bootstrap, group, topics, partitions)


async def consumer_lag(
    bootstrap: str, group: str, topics: list[str], partitions: int
) -> dict[str, tuple[int | None, int]]:
    """Every partition of ``topics`` where ``group`` has not committed up to the end:
    ``"topic[p]" -> (committed, end)`` (committed is None where the group never committed)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        ends = await true_end_offsets(bootstrap, await probe.end_offsets(tps))
        lag: dict[str, tuple[int | None, int]] = {}
        for tp in tps:
            committed = await probe.committed(tp) if ends[tp] else None
            if ends[tp] and (committed or 0) < ends[tp]:
                lag[f"{tp.topic}[{tp.partition}]"] = (committed, ends[tp])
        return lag
    finally:
        await probe.stop()
