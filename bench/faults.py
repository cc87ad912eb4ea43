"""Fault injection: an estate-like load through the embedded stack while the worker is killed.

    python bench/faults.py [--factories 10] [--messages 200] [--kills 5] [--two-workers]
                           [--latency-ms 20] [--keep]

The load: ``--messages`` ADF diagnostic messages of 100 records each (activity, pipeline and
trigger runs that are queued, in progress or succeeded, and 5 failed pipeline runs of distinct
runs), spread over ``--factories`` factories, plus a Log Alerts V2 alert for 30% of the failed
runs (the duplicate alerts an estate also sends). Every failure is a gateway timeout whose
rerun succeeds; retries are due 1-3 s after a failure, the simulator answers in
``--latency-ms``. So every failed run must end as one chain, resolved by exactly one
``createRun``.

The load is sent in slices while the worker is killed with SIGKILL ``--kills`` times at
spread moments: early, in the burst (producer buffers full), while retries wait in the delay
tiers and while reruns are being verified; each time a new worker starts at once. With
``--two-workers`` two workers share the group and one of them is killed each time (the
other takes over its partitions while the replacement starts); each worker records its share
of the outcome rows in a chDB of its own, so the chains are then read from the outcomes topic
instead of ClickHouse.

When the outcomes have settled, the accounting from ClickHouse (the ``chains`` view) and the
simulator's call log is printed:

* ``failures_in``: distinct failed runs sent;
* ``chains_final`` / ``chains_open``: chains of those runs that ended (resolved, manual,
  gave up) / did not;
* ``phantom_chains``: chains that are not a failed run we sent (e.g. a redelivered success);
* ``duplicate_platform_writes``: ``createRun`` calls that started a run (ARM's 429s start
  nothing) beyond one per failed run;
* ``missing_platform_writes``: failed runs that were never rerun;
* ``kills``.

The bars (issue 18): with at least 5 kills, chains_open = phantom_chains =
duplicate_platform_writes = missing_platform_writes = 0 and chains_final = failures_in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import REPO, progress, removed_unless, run_dir

from pipemedic.demo import watch_until_settled
from pipemedic.reporting import read_report
from pipemedic.runtime import WorkerProcess
from pipemedic.stack import EmbeddedStack

sys.path.insert(0, str(REPO))  # the load is shared with the crash-consistency test
from tests.integration.estate_load import FINAL, build_load  # noqa: E402


class Workers:
    """One worker (the stack's own), or two in one group: a kill hits one, and a new one
    takes its place at once."""

    def __init__(self, stack: EmbeddedStack, two: bool) -> None:
        self.stack = stack
        self.extra: WorkerProcess | None = None
        self.started = 1
        if two:
            self.extra = self._start()

    def _start(self) -> WorkerProcess:
        self.started += 1
        return self.stack.start_extra_worker()

    def kill_one(self, n: int) -> None:
        if self.extra is not None and n % 2:
            self.extra.kill()
            self.extra = self._start()
        else:
            self.stack.kill_worker()
            self.stack.start_new_worker()
            self.started += 1

    def stop(self) -> None:
        if self.extra is not None:
            self.extra.stop()
        self.stack.stop_worker()


def run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    payloads, world, failed = build_load(args.factories, args.messages)
    world["latency_ms"] = args.latency_ms
    rules = directory / "rules.yaml"
    rules.write_text(json.dumps({"schedules": {"GatewayTimeout": [1, 2, 3]}}))
    progress(f"{len(payloads)} messages, {len(failed)} failed runs in {args.factories} factories")
    kills = 0
    with EmbeddedStack(
        directory / "stack", world, rules_file=rules, mode="automatic", verify_poll_s=1.0
    ) as stack:
        workers = Workers(stack, args.two_workers)
        slices = 10
        size = -(-len(payloads) // slices)
        # kill moments, in slices sent: early, in the burst, after it (retries waiting in the
        # tiers, reruns being verified)
        kill_after = sorted({int(i * (slices + 4) / args.kills) + 1 for i in range(args.kills)})
        started = time.monotonic()
        for step in range(slices + 5):
            if step < slices:
                chunk = payloads[step * size : (step + 1) * size]
                stack.send_raw(chunk)
                progress(f"  sent slice {step + 1}/{slices} ({len(chunk)} messages)")
            time.sleep(args.pause_s)
            if kills < args.kills and step + 1 in kill_after:
                kills += 1
                progress(f"  kill -9 #{kills} at {time.monotonic() - started:.1f}s")
                workers.kill_one(kills)
        progress("waiting for every chain to settle ...")
        watch = asyncio.run(watch_until_settled(stack, timeout_s=args.timeout))
        progress(f"  settled: {watch.settled} ({watch.line()})")
        reruns = Counter(
            c.query.get("referencePipelineRunId")
            for c in stack.simulator.matching("POST", "*/createRun", 200)
        )
        workers.stop()
        if args.two_workers:  # each worker records its share in a chDB of its own
            by_id = {c: {"final_state": state} for c, state in watch.chains.items()}
        else:
            by_id = {c["chain_id"]: c for c in read_report(stack.settings)[2]}
    expected = {f"adf|{f}|{run}": run for run, (f, _p) in failed.items()}
    final = [c for c in expected if by_id.get(c, {}).get("final_state") in FINAL]
    return {
        "failures_in": len(failed),
        "chains_final": len(final),
        "chains_open": len(expected) - len(final),
        "phantom_chains": len(set(by_id) - set(expected)),
        "duplicate_platform_writes": sum(max(n - 1, 0) for n in reruns.values()),
        "missing_platform_writes": sum(1 for run in failed if reruns[run] == 0),
        "kills": kills,
        "settled": watch.settled,
        "not_final": sorted(set(expected) - set(final))[:10],
        "phantoms": sorted(set(by_id) - set(expected))[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factories", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200, help="diagnostic messages")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--two-workers", action="store_true")
    parser.add_argument("--latency-ms", type=int, default=20, help="simulator latency")
    parser.add_argument("--pause-s", type=float, default=2.0, help="between slices")
    parser.add_argument("--timeout", type=float, default=600.0, help="to settle, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    args = parser.parse_args()
    directory = run_dir("faults")
    with removed_unless(directory, args.keep):
        result = run(args, directory)
    for key, value in result.items():
        print(f"{key}: {value}")
    bars = (
        result["kills"] >= 5
        and result["chains_open"] == 0
        and result["phantom_chains"] == 0
        and result["duplicate_platform_writes"] == 0
        and result["missing_platform_writes"] == 0
        and result["chains_final"] == result["failures_in"]
    )
    print(f"bars (issue 18): {'met' if bars else 'MISSED'}")
    sys.exit(0 if bars else 1)


if __name__ == "__main__":
    main()
