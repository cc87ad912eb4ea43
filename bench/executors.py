"""Executor benchmark: remediation actions against the simulator at 50 ms per platform call.

    python bench/executors.py [--actions 3000] [--latency-ms 50] [--serial-actions 30]
                              [--loads adf,mixed] [--profile] [--keep]

Stack: Tansu broker, the platform simulator in its own process (``latency_ms`` on every
call), one real ``pipemedic worker`` child with the default ``executor_concurrency`` (256,
env ``PIPEMEDIC_EXECUTOR_CONCURRENCY``) and the platform clients it builds itself: one httpx
client (httpx-aiohttp transport) for ARM and Azure AD, azure-identity credentials, and a
databricks-sdk ``WorkspaceClient`` per workspace on a bounded thread pool. The per-workspace
Databricks rate limits are lifted for the run (what is measured is the worker, not a quota);
the ARM buckets stay, one subscription per factory.

Input: ``ActionRequest`` records (execute step, due now) produced straight onto the action
topics (``streams.policy.routing.route``), keyed by chain id, one per failed run or cluster
of a generated world, so every action does real work:

* ``retry_pipeline`` (ADF): ``queryPipelineRuns`` for the run's group, then ``createRun``
  with ``isRecovery`` - 2 calls;
* ``restart_cluster`` (Databricks, cluster TERMINATED): ``clusters/get`` + ``clusters/start``;
* ``repair_job`` (Databricks, failed job run): ``jobs/runs/get`` + ``jobs/runs/repair``.

A *completed action* is an executed step with its outcome recorded: one ``executed`` row on
the ``outcomes`` topic (the executor sends it together with the ``executed`` chain event,
the link alert of the new run and the verify request). Verification is scheduled
``--verify-poll-s`` (default 600 s) later, so verify polls stay out of the measured window;
``--verify-poll-s 1`` puts them in (they then compete for the same executors).

Timing: the worker is started and warmed up first (one action per factory and workspace:
Azure AD token, SDK clients, connection pools), then a load of ``--actions`` requests is
produced; rate = actions / (last ``executed`` row's ``at`` - the moment producing began).
Start-up and warm-up are not counted. Loads: ``adf`` (all ``retry_pipeline``) and ``mixed``
(half ADF, a quarter each cluster restarts and job repairs). Then the worker is replaced by
one with ``PIPEMEDIC_EXECUTOR_CONCURRENCY=1`` for the measured serial baseline on
``--serial-actions`` ADF actions.

The executed rows arrive before the worker has done everything the actions cause: the link
alerts still pass dedup, the executed events advance their chains, the verify requests are
taken into their delay tier and the outcome rows go into ClickHouse, partly after the last
executed row. So the worker's CPU is also read once it has gone quiet again:
``worker_cpu_us_per_action`` is all of it per action, and ``sustained_actions_per_s`` (one
second of a core divided by that) is the rate one worker can keep up without falling behind.

Prints per load ``actions_per_s: X``, ``worker_cpu_us_per_action``,
``sustained_actions_per_s``, ``ratio_vs_serial_nominal`` (vs 20/s, one 50 ms call at a time)
and ``ratio_vs_serial_measured`` (vs the concurrency-1 worker on the same stack).
Bar (issue 19): mixed >= 200 completed actions/s on one worker, checked for both rates; the
ADF-only figure is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from common import (
    CpuMeter,
    PySpy,
    committed_all,
    cpu_seconds,
    follow,
    hot_spots,
    produce_to,
    progress,
    removed_unless,
    run_dir,
    stack,
)

from streams.codecs import encode
from streams.policy import routing
from streams.policy.model import Action, ActionRequest, Alert, Classification, Kind, Step

TENANT = "bench-tenant"
RUNS_PER_FACTORY = 50  # 2 ARM writes per action: within one subscription's burst of 200
WORKSPACE_TOKEN = "dapi-bench-token"
JOB_ID = 7001


# ---- the world -------------------------------------------------------------------------------


@dataclass
class World:
    """The generated world and a cursor over its still unused targets."""

    spec: dict[str, Any]
    adf: list[tuple[str, str, str]]  # (factory, pipeline, run id)
    clusters: list[tuple[str, str]]  # (workspace, cluster id)
    job_runs: list[tuple[str, int]]  # (workspace, run id)
    used: Counter[str] = field(default_factory=Counter)

    def take(self, kind: str, n: int) -> list[Any]:
        pool = {"adf": self.adf, "cluster": self.clusters, "job": self.job_runs}[kind]
        start = self.used[kind]
        if start + n > len(pool):
            raise ValueError(f"world has only {len(pool)} {kind} targets")
        self.used[kind] += n
        return pool[start : start + n]


def build_world(
    adf_runs: int, clusters: int, job_runs: int, latency_ms: float, workspaces: int = 2
) -> World:
    """Failed ADF runs in factories of RUNNING_PER_FACTORY runs (the simulator scans a
    factory's runs per query), TERMINATED clusters and failed job runs in ``workspaces``."""
    factories, adf = [], []
    for f in range(max(1, -(-adf_runs // RUNS_PER_FACTORY))):
        name = f"fac-bench-{f:03d}"
        runs = []
        for _ in range(min(RUNS_PER_FACTORY, adf_runs - len(adf))):
            run_id = str(uuid.uuid4())
            runs.append(
                {
                    "run_id": run_id,
                    "pipeline": "Load_Orders",
                    "status": "Failed",
                    "message": "Operation on target Call failed: 'GatewayTimeout (504)'.",
                }
            )
            adf.append((name, "Load_Orders", run_id))
        factories.append(
            {
                "name": name,
                "subscription": str(uuid.UUID(int=f + 1)),
                "resource_group": "rg-bench",
                "pipelines": [
                    {"name": "Load_Orders", "reruns": ["Succeeded"], "polls_to_finish": 1}
                ],
                "runs": runs,
            }
        )
    spaces, cluster_ids, run_ids = [], [], []
    for w in range(workspaces):
        ws = f"{1000000000000001 + w}"
        n_clusters = clusters // workspaces + (w < clusters % workspaces)
        n_runs = job_runs // workspaces + (w < job_runs % workspaces)
        ws_clusters = [
            {
                "cluster_id": f"0101-000000-bench{w}{i:05d}",
                "state": "TERMINATED",
                "num_workers": 2,
                "termination_code": "DRIVER_UNREACHABLE",
                "termination_type": "CLOUD_FAILURE",
            }
            for i in range(n_clusters)
        ]
        cluster_ids += [(ws, c["cluster_id"]) for c in ws_clusters]
        ws_runs = [
            {
                "run_id": 500000 + w * 100000 + i,
                "job_id": JOB_ID,
                "tasks": [
                    {
                        "task_key": "ingest",
                        "result_state": "FAILED",
                        "state_message": "java.lang.OutOfMemoryError",
                    }
                ],
            }
            for i in range(n_runs)
        ]
        run_ids += [(ws, r["run_id"]) for r in ws_runs]
        spaces.append(
            {
                "workspace_id": ws,
                "token": WORKSPACE_TOKEN,
                "clusters": ws_clusters,
                "jobs": [{"job_id": JOB_ID, "name": "Nightly", "tasks": [{"task_key": "ingest"}]}],
                "runs": ws_runs,
            }
        )
    spec = {
        "latency_ms": latency_ms,
        "call_log_limit": 10_000_000,  # counted per load: must hold every call
        "azure_ad": {
            "tenant_id": TENANT,
            "client_id": "bench-client",
            "client_secret": "bench-secret",
        },
        "factories": factories,
        "workspaces": spaces,
    }
    return World(spec, adf, cluster_ids, run_ids)


# ---- requests --------------------------------------------------------------------------------


def _request(action: str, chain_id: str, alert: Alert, error_type: str, now: int) -> ActionRequest:
    classification = Classification(
        error_type=error_type,
        risk="low",
        action=action,
        max_retries=3,
        backoff_s=(10, 30, 60),
        reason="bench",
    )
    return ActionRequest(
        action_id=f"{chain_id}#1:{action}",
        chain_id=chain_id,
        dedup_key=chain_id,
        action=action,
        step=Step.EXECUTE.value,
        attempt=1,
        max_attempts=3,
        due_at=now,
        alert=alert,
        classification=classification,
        origin="bench",
        reason="bench",
        first_seen_at=now,
    )


def adf_request(target: tuple[str, str, str], now: int) -> ActionRequest:
    factory, pipeline, run_id = target
    alert = Alert(
        alert_id=f"bench-{run_id}",
        source="adf",
        kind=Kind.PIPELINE_RUN.value,
        scope=factory,
        run_id=run_id,
        group_id=run_id,
        pipeline=pipeline,
        error_code="2108",
        message="GatewayTimeout (504)",
        occurred_at=now,
    )
    return _request(
        Action.RETRY_PIPELINE.value, f"adf|{factory}|{run_id}", alert, "GatewayTimeout", now
    )


def cluster_request(target: tuple[str, str], now: int) -> ActionRequest:
    ws, cluster_id = target
    alert = Alert(
        alert_id=f"bench-{cluster_id}",
        source="databricks",
        kind=Kind.CLUSTER.value,
        scope=ws,
        cluster_id=cluster_id,
        error_code="DRIVER_UNREACHABLE",
        failure_type="CLOUD_FAILURE",
        message="Driver is unreachable",
        occurred_at=now,
    )
    return _request(
        Action.RESTART_CLUSTER.value,
        f"dbx|{ws}|cluster|{cluster_id}",
        alert,
        "ClusterUnexpectedTermination",
        now,
    )


def job_request(target: tuple[str, int], now: int) -> ActionRequest:
    ws, run_id = target
    alert = Alert(
        alert_id=f"bench-{run_id}",
        source="databricks",
        kind=Kind.JOB_RUN.value,
        scope=ws,
        run_id=str(run_id),
        job_id=str(JOB_ID),
        pipeline="Nightly",
        error_code="RUN_EXECUTION_ERROR",
        message="java.lang.OutOfMemoryError",
        occurred_at=now,
    )
    return _request(
        Action.REPAIR_JOB.value, f"dbx|{ws}|{run_id}", alert, "DatabricksJobExecutionError", now
    )


def requests_for(world: World, load: str, n: int) -> list[ActionRequest]:
    now = int(time.time() * 1000)
    if load == "adf":
        return [adf_request(t, now) for t in world.take("adf", n)]
    if load == "mixed":  # interleaved, so every instant has both kinds in flight
        n_adf, n_cluster = n // 2, n // 4
        built = (
            [adf_request(t, now) for t in world.take("adf", n_adf)],
            [cluster_request(t, now) for t in world.take("cluster", n_cluster)],
            [job_request(t, now) for t in world.take("job", n - n_adf - n_cluster)],
        )
        mixed = []
        for i in range(max(map(len, built))):
            mixed += [group[i] for group in built if i < len(group)]
        return mixed
    raise ValueError(load)


def messages(
    requests: list[ActionRequest], tiers: tuple[int, ...]
) -> list[tuple[str, bytes, bytes]]:
    out = []
    for request in requests:
        topic, routed = routing.route(request, now_ms=request.due_at, tiers=tiers)
        assert topic == routing.action_topic(request.action), topic
        out.append((topic, routed.chain_id.encode(), encode("action_request", routed.to_dict())))
    return out


# ---- measuring -------------------------------------------------------------------------------

BAR = 200  # mixed completed actions/s on one worker (issue 19)


@dataclass
class Result:
    load: str
    actions: int
    span_s: float
    errors: Counter[str]
    calls: int | None
    cpu: str
    worker_cpu_s: float = 0.0  # until idle, downstream work included

    @property
    def per_s(self) -> float:
        return self.actions / self.span_s

    @property
    def cpu_us_per_action(self) -> float:
        return 1e6 * self.worker_cpu_s / self.actions if self.actions else float("nan")

    @property
    def sustained_per_s(self) -> float:
        """Actions one fully busy worker core completes with everything they cause."""
        return 1e6 / self.cpu_us_per_action


def sim_calls(sim_url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{sim_url}/_sim/calls?limit=0", timeout=5) as answer:
            return int(json.load(answer)["count"])
    except (OSError, ValueError, KeyError):
        return None


async def run_load(
    s,
    worker,
    tiers,
    requests: list[ActionRequest],
    load: str,
    timeout_s: float,
    meter: CpuMeter | None = None,
) -> Result:
    chains = {r.chain_id for r in requests}
    executed: dict[str, int] = {}
    errors: Counter[str] = Counter()

    def seen(message: Any, value: dict[str, Any]) -> None:
        chain = value.get("chain_id")
        if chain not in chains:
            return
        if message.topic == routing.OUTCOMES:
            if value["state"] == "executed":
                executed[chain] = value["at"]
            elif value["state"] in ("retrying", "dead_letter"):
                errors[f"outcome {value['state']}: {value['detail'][:100]}"] += 1
        elif value["kind"] == "action_error":
            errors[f"action_error: {value['detail'][:100]}"] += 1

    calls_before = sim_calls(s.sim_url)
    batch = messages(requests, tiers)
    if meter:
        meter.start()
    started_ms = time.time() * 1000
    await produce_to(s.bootstrap, batch)
    ok = await follow(
        s.bootstrap,
        {routing.OUTCOMES: "outcome", routing.CHAIN_EVENTS: "chain_event"},
        done=lambda: len(executed) + sum(errors.values()) >= len(chains),
        on_message=seen,
        timeout_s=timeout_s,
        alive=lambda: worker.alive,
        log=worker.log_path,
        status=lambda: (
            f"{load}: executed {len(executed)}/{len(chains)}, errors {sum(errors.values())}"
        ),
    )
    if meter:
        meter.stop()
    if not ok:
        raise RuntimeError(
            f"{load}: only {len(executed)} of {len(chains)} executed; "
            f"errors {dict(errors)}; see {worker.log_path}"
        )
    cpu_all = (
        await worker_cpu_until_idle(worker.process.pid, meter.begin["worker"], timeout_s)
        if meter
        else 0.0
    )
    calls_after = sim_calls(s.sim_url)
    calls = calls_after - calls_before if None not in (calls_before, calls_after) else None
    span = (max(executed.values()) - started_ms) / 1000 if executed else float("nan")
    return Result(load, len(executed), span, errors, calls, meter.line() if meter else "", cpu_all)


async def worker_cpu_until_idle(
    pid: int, began: float, timeout_s: float, quiet_s: float = 0.5
) -> float:
    """The worker's CPU seconds since ``began`` once it has gone quiet: what it spent on the
    load including what the executors' effects cost downstream after the last executed row
    (dedup of the links, chain advances, holding the verify requests, the ClickHouse rows)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(quiet_s)
        after = cpu_seconds(pid)
        if after - before < 0.1 * quiet_s:  # under 10% of a core: only timers left
            return after - began
    raise RuntimeError(f"the worker was still busy {timeout_s:g}s after the last executed row")


def warm_up(world: World, loads: list[str]) -> list[ActionRequest]:
    """One action per factory and workspace that the loads will touch."""
    now = int(time.time() * 1000)
    warm = [adf_request(world.take("adf", 1)[0], now)]
    if "mixed" in loads:
        per_ws: dict[str, Any] = {}
        for _ in range(len(world.clusters)):
            target = world.clusters[world.used["cluster"]]
            if target[0] in per_ws:
                break
            per_ws[target[0]] = cluster_request(world.take("cluster", 1)[0], now)
        warm += list(per_ws.values())
        warm.append(job_request(world.take("job", 1)[0], now))
    return warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=3000, help="actions per load")
    parser.add_argument("--loads", default="adf,mixed", help="comma list of adf, mixed")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--serial-actions",
        type=int,
        default=30,
        help="actions for the measured concurrency-1 baseline (0: skip)",
    )
    parser.add_argument("--verify-poll-s", type=float, default=600.0)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="PIPEMEDIC_EXECUTOR_CONCURRENCY for the measured worker "
        "(default: the product default)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per load, seconds")
    parser.add_argument("--profile", action="store_true", help="py-spy the measured worker")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    args = parser.parse_args()
    loads = [x for x in args.loads.split(",") if x]

    n_adf = sum(args.actions if x == "adf" else args.actions // 2 for x in loads)
    n_dbx = args.actions // 2 + 4 if "mixed" in loads else 0
    world = build_world(n_adf + args.serial_actions + 4, n_dbx, n_dbx, args.latency_ms)
    directory = run_dir("executors")
    results: list[Result] = []
    serial: Result | None = None
    with (
        removed_unless(directory, args.keep),
        stack(
            directory,
            world.spec,
            simulator="process",
            estate_extras={},
            verify_poll_s=args.verify_poll_s,
            databricks_reads_per_s=1e6,  # the worker is measured here, not a platform quota
            databricks_writes_per_s=1e6,
        ) as s,
    ):
        from pipemedic.worker import load_rulebook, plan_tiers

        tiers = plan_tiers(s.settings, load_rulebook(s.settings.rules_file)[1])
        env = {"PIPEMEDIC_EXECUTOR_CONCURRENCY": str(args.concurrency)} if args.concurrency else {}
        concurrency = args.concurrency or s.settings.executor_concurrency
        progress(
            f"simulator {s.sim_url} (latency {args.latency_ms:g} ms), worker with "
            f"executor_concurrency {concurrency}"
        )
        worker = s.start_worker("worker", **env)
        spy = None
        pids = {"worker": worker.process.pid, "broker": s.broker.process.pid, "bench": os.getpid()}
        if s.sim_pid:
            pids["simulator"] = s.sim_pid
        try:
            warm = warm_up(world, loads)
            progress(f"warming up with {len(warm)} actions (worker start-up included) ...")
            asyncio.run(run_load(s, worker, tiers, warm, "warm-up", args.timeout))
            if args.profile:  # the loads only: start-up and warm-up would swamp them
                spy = PySpy(worker.process.pid, directory / "worker.pyspy.txt")
            for load in loads:
                requests = requests_for(world, load, args.actions)
                progress(f"load {load}: {len(requests)} actions ...")
                meter = CpuMeter(pids)
                result = asyncio.run(
                    run_load(s, worker, tiers, requests, load, args.timeout, meter)
                )
                results.append(result)
                progress(f"  {load}: {result.per_s:,.0f} actions/s")
        finally:
            if spy is not None:
                progress(f"py-spy profile of the worker during the loads:\n{hot_spots(spy.stop())}")
            retire(s)
        if args.serial_actions:
            progress("serial baseline: a worker with executor_concurrency 1 ...")
            worker = s.start_worker("worker-serial", PIPEMEDIC_EXECUTOR_CONCURRENCY="1")
            try:
                warm = [adf_request(world.take("adf", 1)[0], int(time.time() * 1000))]
                asyncio.run(run_load(s, worker, tiers, warm, "serial warm-up", args.timeout))
                requests = requests_for(world, "adf", args.serial_actions)
                serial = asyncio.run(run_load(s, worker, tiers, requests, "serial", args.timeout))
                progress(f"  serial: {serial.per_s:,.1f} actions/s")
            finally:
                retire(s)

    print(
        f"== executors: simulator latency {args.latency_ms:g} ms per call, one worker, "
        f"executor_concurrency {concurrency}, verify polls "
        f"{'outside' if args.verify_poll_s > 60 else 'inside'} the window =="
    )
    nominal = 1000.0 / args.latency_ms
    if serial:
        per_action = f"{serial.calls / serial.actions:.1f}" if serial.calls else "?"
        print(
            f"  serial (concurrency 1): {serial.per_s:.1f} actions/s over {serial.actions} "
            f"ADF actions ({per_action} calls/action)"
        )
    for r in results:
        per_action = f"{r.calls / r.actions:.2f} calls/action" if r.calls else "calls: ?"
        print(f"== load {r.load}: {r.actions} actions in {r.span_s:.2f}s ({per_action}) ==")
        if r.cpu:
            print(f"  {r.cpu}")
        if r.errors:
            print(f"  errors: {dict(r.errors)}")
        print(f"actions_per_s: {r.per_s:.0f}")
        if r.worker_cpu_s:
            print(
                f"worker_cpu_us_per_action: {r.cpu_us_per_action:.0f}  (until idle: the "
                f"links, chain advances, verify holds and ClickHouse rows they caused included)"
            )
            print(f"sustained_actions_per_s: {r.sustained_per_s:.0f}  (1 s of worker CPU / that)")
        print(f"ratio_vs_serial_nominal: {r.per_s / nominal:.1f}  (serial nominal {nominal:g}/s)")
        if serial:
            print(f"ratio_vs_serial_measured: {r.per_s / serial.per_s:.1f}")
        if r.load != "mixed":
            continue
        print(f"bar mixed >= {BAR}/s: {'met' if r.per_s >= BAR else 'MISSED'}")
        if r.worker_cpu_s:
            met = r.sustained_per_s >= BAR
            print(f"bar mixed >= {BAR}/s sustained: {'met' if met else 'MISSED'}")


def retire(s) -> None:
    """Stop the worker once it committed the action topics. Not gracefully: a graceful stop
    waits (Faust's ``wait_empty``) for the verify requests the delay agent holds unacked,
    until ``WorkerProcess.stop`` gives up after 30 s and kills it anyway."""
    topics = routing.all_action_topics()
    if not asyncio.run(
        committed_all(s.bootstrap, s.settings.app_id, topics, s.settings.partitions, 20)
    ):
        progress("  the worker did not commit every action within 20 s; killing it anyway")
    s.kill_children()


if __name__ == "__main__":
    main()
