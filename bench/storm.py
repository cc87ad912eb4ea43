"""A regional outage: many pipelines in several factories fail within a minute, then the
platform recovers. Does pipemedic stay within its limits?

    python bench/storm.py [--factories 10] [--pipelines 100] [--budget-actions 400]
                          [--latency-ms 20] [--keep]

Three runs on the embedded stack with the simulator, each with ``--factories`` factories of
``--pipelines`` pipelines that all fail at once (a gateway timeout; every rerun succeeds: the
platform has recovered by the time actions go out):

1. **storm**: the storm guard (more than 20 pipelines of one factory failing within 60 s) and a
   daily budget of ``--budget-actions`` reruns. Prints ``actions_issued`` (``createRun`` calls
   that started a run; ARM's 429s start nothing),
   ``budget`` (in actions), ``storm_escalations`` (``storm`` rows per factory: the bar is one
   each), ``chains_lost`` (failed runs whose chain did not end: resolved, or handed to people).
2. **observe**: the same storm with those factories in observe mode (a rollout row).
   ``observe_writes``: write calls (POST) in the simulator's log; the bar is 0.
3. **pause**: two workers, no storm guard; ``pipemedic pause`` while the reruns are going out.
   ``pause_effect_s``: from the pause to the last ``createRun`` sent afterwards on the
   paused scope, whatever ARM answered; the bar is 2 s. The pause is then lifted: every run
   must be rerun once (``reruns_twice``: those rerun twice).

Bars (issue 14): actions_issued <= budget, storm_escalations = 1 per factory, chains_lost = 0,
observe_writes = 0, pause_effect_s <= 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from common import REPO, progress, removed_unless, run_dir

from pipemedic.demo import watch_until_settled
from pipemedic.runtime import send_pause
from pipemedic.stack import EmbeddedStack

sys.path.insert(0, str(REPO))  # the alert shapes are shared with the crash-consistency load
from tests.integration.estate_load import (  # noqa: E402
    FIXTURES,
    GATEWAY,
    GROUP,
    SUBSCRIPTION,
    log_alert,
)

COST_USD = 0.25  # one rerun, as the budget counts it
STORM = {"scope": "factory", "distinct": "target", "more_than": 20, "within_s": 60}


def factory(i: int) -> str:
    return f"adf-storm-{i:02d}"


def outage(factories: int, pipelines: int) -> tuple[list[bytes], dict[str, Any], dict[str, str]]:
    """(one alert per failed run, the world, run id -> factory)."""
    template = json.loads((FIXTURES / "azure_log_alert_v2.json").read_text())
    failed: dict[str, str] = {}
    payloads, world_factories = [], []
    for i in range(factories):
        name, runs = factory(i), []
        for j in range(pipelines):
            run_id, pipeline = str(uuid.uuid4()), f"Load_{j:03d}"
            failed[run_id] = name
            runs.append(
                {"run_id": run_id, "pipeline": pipeline, "status": "Failed", "message": GATEWAY}
            )
            payloads.append(log_alert(template, name, pipeline, run_id))
        world_factories.append(
            {
                "name": name,
                "subscription": SUBSCRIPTION,
                "resource_group": GROUP,
                "pipelines": [
                    {"name": f"Load_{j:03d}", "reruns": ["Succeeded"], "polls_to_finish": 1}
                    for j in range(pipelines)
                ],
                "runs": runs,
            }
        )
    world = {
        "azure_ad": {"tenant_id": "t", "client_id": "c", "client_secret": "s"},
        "factories": world_factories,
    }
    return payloads, world, failed


def rules(directory: Path, **tables: Any) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"schedules": {"GatewayTimeout": [2]}, **tables}))
    return path


def storm_run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    payloads, world, failed = outage(args.factories, args.pipelines)
    world["latency_ms"] = args.latency_ms
    budget = args.budget_actions
    with EmbeddedStack(
        directory / "storm",
        world,
        rules_file=rules(directory, storms=[STORM]),
        daily_cost_cap_usd=budget * COST_USD,
        action_cost_usd={"retry_pipeline": COST_USD},
        admission_recheck_s=5.0,
        storm_probe_s=10.0,
        storm_release_per_s=args.release_per_s,
    ) as stack:
        stack.worker.wait_ready()
        started = time.monotonic()
        stack.send_raw(payloads)
        progress(f"storm: {len(payloads)} failures sent in {time.monotonic() - started:.1f}s")
        watch = asyncio.run(watch_until_settled(stack, timeout_s=args.timeout))
        progress(
            f"  settled: {watch.settled} in {time.monotonic() - started:.0f}s ({watch.line()})"
        )
        issued = stack.simulator.count("POST", "*/createRun", 200)
    storms = Counter(r["scope"] for r in watch.rows if r["state"] == "storm")
    final = {cid for cid, state in watch.chains.items() if state in ("resolved", "manual")}
    lost = sum(1 for run, name in failed.items() if f"adf|{name}|{run}" not in final)
    return {
        "failures": len(failed),
        "actions_issued": issued,
        "budget": budget,
        "storm_escalations": dict(sorted(storms.items())),
        "storm_scopes": args.factories,
        "chains_lost": lost,
        "handed_to_people": sum(1 for s in watch.chains.values() if s == "manual"),
    }


def observe_run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    payloads, world, _ = outage(args.factories, args.pipelines)
    rollout = [{"name": "outage observed", "targets": ["adf-storm-*"], "mode": "observe"}]
    with EmbeddedStack(
        directory / "observe", world, rules_file=rules(directory, rollout=rollout)
    ) as stack:
        stack.worker.wait_ready()
        stack.send_raw(payloads)
        watch = asyncio.run(watch_until_settled(stack, timeout_s=args.timeout))
        progress(f"observe: settled {watch.settled} ({watch.line()})")
        # a platform write: any POST but ARM's query actions and Azure AD's token endpoint
        writes = [
            c
            for c in stack.simulator.matching("POST", "*")
            if "query" not in c.path.lower() and "/oauth2/" not in c.path
        ]
    return {"observe_writes": len(writes)}


def pause_run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    payloads, world, failed = outage(args.factories, args.pipelines)
    world["latency_ms"] = args.latency_ms
    with EmbeddedStack(directory / "pause", world, rules_file=rules(directory)) as stack:
        second = stack.start_extra_worker()
        stack.worker.wait_ready()
        second.wait_ready()
        stack.send_raw(payloads)
        # reruns start 2 s after each failure: pause while they are going out
        while stack.simulator.count("POST", "*/createRun", 200) < len(failed) // 10:
            time.sleep(0.05)
        paused_at = time.time()
        asyncio.run(send_pause(stack.bootstrap, "*", paused=True, by="bench", reason="outage"))
        progress(f"pause: sent after {stack.simulator.count('POST', '*/createRun', 200)} reruns")
        time.sleep(6)
        starts = [c.at for c in stack.simulator.matching("POST", "*/createRun")]
        after = [at for at in starts if at >= paused_at]
        asyncio.run(send_pause(stack.bootstrap, "*", paused=False, by="bench"))
        deadline = time.monotonic() + args.timeout
        while stack.simulator.count("POST", "*/createRun", 200) < len(failed):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        reruns = Counter(
            c.query.get("referencePipelineRunId")
            for c in stack.simulator.matching("POST", "*/createRun", 200)
        )
    return {
        "pause_effect_s": round(max(after) - paused_at, 2) if after else 0.0,
        "reruns_after_resume": sum(1 for run in failed if reruns[run] == 1),
        "reruns_twice": sum(1 for n in reruns.values() if n > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factories", type=int, default=10)
    parser.add_argument("--pipelines", type=int, default=100, help="per factory")
    parser.add_argument("--budget-actions", type=int, default=400)
    parser.add_argument("--release-per-s", type=float, default=50.0)
    parser.add_argument("--latency-ms", type=int, default=20, help="simulator latency")
    parser.add_argument("--timeout", type=float, default=600.0, help="to settle, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    parser.add_argument("--only", choices=("storm", "observe", "pause"), help="one run of three")
    args = parser.parse_args()
    directory = run_dir("storm")
    runs = {"storm": storm_run, "observe": observe_run, "pause": pause_run}
    with removed_unless(directory, args.keep):
        result = {}
        for name, run in runs.items():
            if args.only in (None, name):
                result.update(run(args, directory))
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.only:
        return
    escalations = result["storm_escalations"]
    bars = (
        result["actions_issued"] <= result["budget"]
        and len(escalations) == result["storm_scopes"]
        and set(escalations.values()) == {1}
        and result["chains_lost"] == 0
        and result["observe_writes"] == 0
        and result["pause_effect_s"] <= 2.0
        and result["reruns_twice"] == 0
    )
    print(f"bars (issue 14): {'met' if bars else 'MISSED'}")
    sys.exit(0 if bars else 1)


if __name__ == "__main__":
    main()
