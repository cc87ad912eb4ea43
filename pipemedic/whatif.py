"""``pipemedic whatif``: what each policy would have done with the same recorded alerts.

Each policy (``--rules A``, and ``--against B`` applied on top of A, the way a patch from
``pipemedic tune`` is meant) gets its own real pipeline on one embedded broker: its own
topic prefix and consumer group, its own worker process, ClickHouse store and platform
simulator loaded with the same world, so nothing one run does is seen by the other. Both
run at the same time (most of a run is waiting on backoffs and verification polls), each is
followed until every chain is final and the worker has committed everything, and the
report is read back from each store. :mod:`pipemedic.whatif_report` compares them.

Without ``--rules`` A is the shipped rule table with the demo's short schedules (what
``pipemedic demo`` runs). Without ``--world`` the world is derived from the alerts
(:mod:`pipemedic.whatif_world`): every failed run's first rerun fails and the next succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipemedic.demo import QUIET_S, Watch, _caught_up
from pipemedic.embedded import EmbeddedBroker, create_topics, free_port
from pipemedic.reporting import read_report
from pipemedic.runtime import RecordTail, WorkerProcess, produce_raw
from pipemedic.simulator import load_world, start_in_thread
from pipemedic.stack import DEMO_DATA, fast_settings, relative_times, write_estate
from pipemedic.worker import planned_topics
from streams.policy import routing
from streams.settings import Settings, default_data_dir

LABELS = ("A", "B")


@dataclass
class PolicyRun:
    label: str
    rules: str  # the file the worker ran with
    settled: bool = False
    elapsed_s: float = 0.0
    chains: list[dict[str, Any]] = field(default_factory=list)
    by_error_type: list[dict[str, Any]] = field(default_factory=list)
    kpis: dict[str, Any] = field(default_factory=dict)
    dead_letters: int = 0


@dataclass
class Policy:
    label: str
    rules_file: Path
    description: str = ""
    settings: Settings | None = None
    worker: WorkerProcess | None = None
    simulator: Any = None


def layered_rules(run_dir: Path, rules: Path | None, against: Path | None) -> list[Path]:
    """The rules file of each policy: A as given (or the demo's), B = A's entries then the
    patch's (``load_rules`` applies entries in order, so B's change A's by name)."""
    base = Path(rules) if rules else DEMO_DATA / "rules.yaml"
    files = [base]
    if against is not None:
        doc_a = yaml.safe_load(base.read_text(encoding="utf-8")) or {}
        doc_b = yaml.safe_load(Path(against).read_text(encoding="utf-8")) or {}
        merged = {
            "schedules": {**(doc_a.get("schedules") or {}), **(doc_b.get("schedules") or {})},
            "rules": [*(doc_a.get("rules") or []), *(doc_b.get("rules") or [])],
        }
        path = run_dir / "rules-B.yaml"
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
        files.append(path)
    return files


def estate_extras(estate: Path | None) -> dict[str, Any] | None:
    """What an estate file adds besides connections (upstream map, library fallbacks,
    playbooks): the simulator provides the connections. None: the demo's extras."""
    if estate is None:
        return None
    doc = yaml.safe_load(Path(estate).read_text(encoding="utf-8")) or {}
    adf = {k: v for k, v in (doc.get("adf") or {}).items() if k not in ("factories", "arm_url")}
    dbx = {k: v for k, v in (doc.get("databricks") or {}).items() if k != "workspaces"}
    return {"adf": adf, "databricks": dbx, "playbooks": doc.get("playbooks") or {}}


def derived_extras(world_doc: dict[str, Any]) -> dict[str, Any]:
    """The demo's extras (upstream map, library fallbacks) for a derived world, keeping only
    upstream pipelines the world has."""
    extras = yaml.safe_load((DEMO_DATA / "estate_extras.yaml").read_text()) or {}
    pipelines = {
        f["name"]: {p["name"] for p in f.get("pipelines", [])}
        for f in world_doc.get("factories", [])
    }
    dependencies = {
        factory: {
            p: [u for u in ups if u in pipelines.get(factory, ())]
            for p, ups in deps.items()
            if any(u in pipelines.get(factory, ()) for u in ups)
        }
        for factory, deps in (extras.get("adf", {}).get("dependencies") or {}).items()
    }
    extras.setdefault("adf", {})["dependencies"] = {f: d for f, d in dependencies.items() if d}
    return extras


def check_rules(files: list[Path]) -> None:
    """Each policy's rules load (a bad patch fails here, before anything starts)."""
    from streams.policy.rules import load_rules

    for path in files:
        load_rules(path)


def run_whatif(
    alert_lines: list[bytes],
    *,
    rules: Path | None = None,
    against: Path | None = None,
    estate: Path | None = None,
    world: Path | dict[str, Any] | None = None,
    timeout_s: float = 300.0,
    keep: bool = False,
    say: Any = None,
) -> list[PolicyRun]:
    """Run the alerts through one pipeline per policy; returns each run's report."""
    from pipemedic.whatif_world import derive_world

    say = say or (lambda _text: None)
    base = Settings().data_dir if "PIPEMEDIC_DATA_DIR" in os.environ else default_data_dir()
    run_dir = base / "runs" / f"whatif-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        world_doc = world if world is not None else derive_world(alert_lines)
        loaded = load_world(world_doc)
        extras = estate_extras(estate) if estate or world is not None else derived_extras(world_doc)
        files = layered_rules(run_dir, rules, against)
        check_rules(files)
        names = [str(files[0]), f"{files[0]} + {against}"]
        policies = [Policy(*each) for each in zip(LABELS, files, names, strict=False)]
        with contextlib.ExitStack() as stack:
            broker = stack.enter_context(EmbeddedBroker(run_dir / "broker"))
            for policy in policies:
                policy_dir = run_dir / policy.label
                policy_dir.mkdir(exist_ok=True)
                policy.simulator = start_in_thread(world_doc)  # its own state per policy
                stack.callback(policy.simulator.stop)
                estate_file = write_estate(policy_dir, loaded, policy.simulator, extras)
                policy.settings = fast_settings(
                    policy_dir,
                    broker.url,
                    estate_file,
                    rules_file=policy.rules_file,
                    topic_prefix=f"whatif-{policy.label.lower()}-",
                    ca_bundle=policy.simulator.ca_file,
                    web_port=free_port(),
                )
                asyncio.run(
                    create_topics(
                        broker.bootstrap,
                        planned_topics(policy.settings),
                        policy.settings.partitions,
                    )
                )
            for policy in policies:
                assert policy.settings is not None
                log = run_dir / policy.label / "worker.log"
                policy.worker = WorkerProcess(policy.settings, log).start()
                stack.callback(policy.worker.stop)
            say(f"whatif: {len(policies)} policies, broker {broker.bootstrap}, run {run_dir}")
            runs = asyncio.run(_run_all(broker.bootstrap, policies, alert_lines, timeout_s, say))
            for policy, run in zip(policies, runs, strict=True):
                assert policy.worker is not None and policy.settings is not None
                policy.worker.stop()  # a graceful stop flushes the ClickHouse sink
                run.by_error_type, run.kpis, run.chains = read_report(policy.settings)
        return runs
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


async def _run_all(
    bootstrap: str, policies: list[Policy], lines: list[bytes], timeout_s: float, say: Any
) -> list[PolicyRun]:
    now = time.time()
    payloads = [relative_times(line, now) for line in lines]
    for policy in policies:
        assert policy.settings is not None
        raw = routing.prefixed(routing.RAW, policy.settings.topic_prefix)
        await produce_raw(bootstrap, raw, payloads)
    return list(await asyncio.gather(*(_settle(bootstrap, p, timeout_s, say) for p in policies)))


async def _settle(bootstrap: str, policy: Policy, timeout_s: float, say: Any) -> PolicyRun:
    """Follow one policy's outcomes until every chain is final, nothing moved for a while
    and its worker has committed everything it reads."""
    settings = policy.settings
    assert settings is not None and policy.worker is not None
    prefix = settings.topic_prefix
    run = PolicyRun(policy.label, policy.description)
    watch = Watch()
    dead_letter = routing.prefixed(routing.DEAD_LETTER, prefix)
    consumed = [
        t for t in planned_topics(settings) if not t.endswith("-changelog") and t != dead_letter
    ]
    group = routing.group_id(settings.app_id, prefix)
    started = time.monotonic()
    deadline = started + timeout_s
    outcomes = routing.prefixed(routing.OUTCOMES, prefix)
    async with RecordTail(bootstrap, outcomes, "outcome") as tail:
        while time.monotonic() < deadline and policy.worker.alive:
            for outcome in await tail.poll(500):
                watch.see(outcome)
            quiet = time.monotonic() - watch.last_change >= QUIET_S
            if (
                watch.states
                and not watch.open_chains
                and quiet
                and await _caught_up(bootstrap, group, consumed, settings.partitions)
            ):
                run.settled = True
                break
    run.elapsed_s = time.monotonic() - started
    run.dead_letters = watch.states["dead_letter"]
    say(f"whatif {policy.label}: {watch.line()}")
    return run
