"""Databricks adapter micro-benchmark: CPU per call of the client vs plain SDK calls.

    python bench/databricks_calls.py [--actions 1000] [--concurrency 64] [--latency-ms 50]
                                     [--rounds 3] [--only sdk|adapter] [--keep]

The platform simulator runs in its own process (``latency_ms`` on every call), so this
process's CPU is the client's alone. Each *action* is the pair of calls the executors make:
``clusters/get`` + ``clusters/start`` on a TERMINATED cluster, or ``jobs/runs/get`` +
``jobs/runs/repair`` on a failed run (half each, interleaved), every action on its own
target, ``--concurrency`` actions in flight from one event loop.

Two variants, measured in turn in this process against the same simulator (``--rounds``
times each, alternating, so drift hits both):

* ``sdk`` - the baseline: plain typed ``WorkspaceClient`` calls (``w.clusters.get(...)``, ...)
  on a thread pool of ``--concurrency`` threads via ``run_in_executor``, the client built from
  a plain public ``Config`` (PAT) with a connection pool of the same size;
* ``adapter`` - ``streams.adapters.databricks.DatabricksClient`` as the worker uses it (its
  own pool and per-workspace semaphore, records instead of SDK dataclasses, error mapping),
  its rate limits lifted so that only CPU is compared.

CPU is ``time.process_time()`` over the measured window (every thread of this process),
divided by the calls made. Prints per variant ``calls_per_s`` and ``cpu_ms_per_call`` (median
round) and ``cpu_ratio_adapter_vs_sdk``: what the adapter's layer costs on top of the SDK
(1.0 = nothing). Both variants spend most of their CPU in the SDK, requests and urllib3 and
in the GIL hand-offs of the threads; ``--only adapter`` under a profiler shows where.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests.adapters
import yaml
from common import (
    CallRound,
    SimulatorProcess,
    call_round,
    median_rounds,
    progress,
    removed_unless,
    run_dir,
)
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from pydantic import SecretStr

from streams.adapters.databricks import DatabricksClient, DatabricksConfig, WorkspaceRef
from streams.policy.throttle import Rate

WS = "1000000000000001"
TOKEN = "dapi-bench-token"
JOB_ID = 7001


def build_world(clusters: int, runs: int, latency_ms: float) -> dict[str, Any]:
    return {
        "latency_ms": latency_ms,
        "call_log_limit": 1000,  # the log is not read here
        "workspaces": [
            {
                "workspace_id": WS,
                "token": TOKEN,
                "clusters": [
                    {
                        "cluster_id": f"0101-000000-bench{i:06d}",
                        "state": "TERMINATED",
                        "num_workers": 2,
                        "termination_code": "DRIVER_UNREACHABLE",
                        "termination_type": "CLOUD_FAILURE",
                    }
                    for i in range(clusters)
                ],
                "jobs": [{"job_id": JOB_ID, "name": "Nightly", "tasks": [{"task_key": "ingest"}]}],
                "runs": [
                    {
                        "run_id": 500000 + i,
                        "job_id": JOB_ID,
                        "tasks": [
                            {
                                "task_key": "ingest",
                                "result_state": "FAILED",
                                "state_message": "java.lang.OutOfMemoryError",
                                "cluster_id": "0101-000000-bench000000",
                            },
                            {"task_key": "report", "result_state": "SUCCESS"},
                        ],
                    }
                    for i in range(runs)
                ],
            }
        ],
    }


# ---- the two ways to make the calls ----------------------------------------------------------

Action = Callable[[], Awaitable[None]]


class SdkCalls:
    """The baseline: typed WorkspaceClient calls on a thread pool."""

    def __init__(self, host: str, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sdk")
        self.connections = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=threads, pool_block=True
        )
        config = Config(host=host, token=TOKEN, auth_type="pat", http_adapter=self.connections)
        self.w = WorkspaceClient(config=config)

    async def _run(self, operation: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, operation)

    def restart(self, cluster_id: str) -> Action:
        async def action() -> None:
            details = await self._run(lambda: self.w.clusters.get(cluster_id))
            assert details.state is not None
            await self._run(lambda: self.w.clusters.start(cluster_id))

        return action

    def repair(self, run_id: int) -> Action:
        async def action() -> None:
            run = await self._run(lambda: self.w.jobs.get_run(run_id, include_history=True))
            latest = [h.id for h in run.repair_history or () if h.type.value == "REPAIR"]
            await self._run(
                lambda: self.w.jobs.repair_run(
                    run_id,
                    rerun_all_failed_tasks=True,
                    latest_repair_id=latest[-1] if latest else None,
                )
            )

        return action

    async def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.connections.close()


class AdapterCalls:
    """``DatabricksClient``, as the executors call it."""

    def __init__(self, host: str, threads: int) -> None:
        ref = WorkspaceRef(host, SecretStr(TOKEN))
        unlimited = Rate(capacity=1e9, refill_per_s=1e9)
        self.dbx = DatabricksClient(
            DatabricksConfig({WS: ref}, threads=threads), reads=unlimited, writes=unlimited
        )

    def restart(self, cluster_id: str) -> Action:
        async def action() -> None:
            cluster = await self.dbx.get_cluster(WS, cluster_id)
            assert cluster.state
            await self.dbx.start_cluster(WS, cluster_id)

        return action

    def repair(self, run_id: int) -> Action:
        async def action() -> None:
            run = await self.dbx.get_run(WS, run_id)
            await self.dbx.repair_run(WS, run_id, run.latest_repair_id)

        return action

    async def close(self) -> None:
        await self.dbx.aclose()


# ---- measuring -------------------------------------------------------------------------------


class Targets:
    def __init__(self, clusters: int, runs: int) -> None:
        self.clusters = iter(f"0101-000000-bench{i:06d}" for i in range(clusters))
        self.runs = iter(500000 + i for i in range(runs))

    def actions(self, calls: Any, n: int) -> list[Action]:
        """``n`` actions, restarts and repairs interleaved."""
        return [
            calls.restart(next(self.clusters)) if i % 2 else calls.repair(next(self.runs))
            for i in range(n)
        ]


async def measure(variant: str, actions: list[Action], concurrency: int) -> CallRound:
    return await call_round(variant, actions, concurrency, calls_per_action=2)


async def bench(args: argparse.Namespace, host: str, targets: Targets) -> list[CallRound]:
    variants = {"sdk": SdkCalls, "adapter": AdapterCalls}
    names = [args.only] if args.only else list(variants)
    clients = {name: variants[name](host, args.concurrency) for name in names}
    try:
        for name, calls in clients.items():  # client, pool and connections built outside
            progress(f"warming up {name} ...")
            await measure(name, targets.actions(calls, 2 * args.concurrency), args.concurrency)
        rounds = []
        for r in range(args.rounds):
            for name, calls in clients.items():
                result = await measure(name, targets.actions(calls, args.actions), args.concurrency)
                rounds.append(result)
                progress(
                    f"round {r + 1} {name}: {result.per_s:,.0f} calls/s, "
                    f"{result.cpu_us / 1000:.3f} ms CPU/call, errors {sum(result.errors.values())}"
                )
        return rounds
    finally:
        for calls in clients.values():
            await calls.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=1000, help="actions per round (2 calls)")
    parser.add_argument("--concurrency", type=int, default=64, help="actions in flight")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant")
    parser.add_argument("--only", choices=["sdk", "adapter"], help="one variant (for profiling)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (simulator log)")
    args = parser.parse_args()

    variants = 1 if args.only else 2
    per_kind = (args.rounds * args.actions + 2 * args.concurrency) * variants // 2 + 1
    directory = run_dir("databricks-calls")
    with removed_unless(directory, args.keep):
        world_file = directory / "world.yaml"
        world = build_world(per_kind, per_kind, args.latency_ms)
        world_file.write_text(yaml.safe_dump(world, sort_keys=False))
        sim = SimulatorProcess(world_file, directory / "simulator.log").start()
        try:
            host = f"{sim.url}/databricks/{WS}"
            progress(f"simulator {sim.url} (latency {args.latency_ms:g} ms), pid {os.getpid()}")
            rounds = asyncio.run(bench(args, host, Targets(per_kind, per_kind)))
        finally:
            sim.stop()

    print(
        f"== databricks calls: simulator latency {args.latency_ms:g} ms, "
        f"{args.concurrency} actions in flight, as many threads and connections, "
        f"{2 * args.actions} calls per round =="
    )
    median = {}
    for name, (middle, errors) in median_rounds(rounds).items():
        median[name] = middle
        print(
            f"{name}: calls_per_s: {middle.per_s:.0f}  cpu_ms_per_call: {middle.cpu_us / 1000:.3f}"
        )
        if errors:
            print(f"  errors: {dict(errors)}")
    if len(median) == 2:
        ratio = median["adapter"].cpu_us / median["sdk"].cpu_us
        print(f"cpu_ratio_adapter_vs_sdk: {ratio:.2f}")
        print(
            f"calls_per_s_ratio_adapter_vs_sdk: {median['adapter'].per_s / median['sdk'].per_s:.2f}"
        )


if __name__ == "__main__":
    main()
