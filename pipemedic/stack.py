"""The embedded stack: Tansu broker, platform simulator and worker processes, as one unit.

``pipemedic demo``, the integration tests and the benchmarks all start pipemedic this way, so
what the tests exercise is what a user runs. Everything lives in one run folder and is
stopped on exit, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import time
from pathlib import Path
from typing import Any

import yaml

from pipemedic.demo_notifications import at_simulator
from pipemedic.embedded import EmbeddedBroker, create_topics, free_port
from pipemedic.runtime import WorkerProcess, produce_raw
from pipemedic.simulator import load_world, start_in_thread
from pipemedic.worker import planned_topics
from streams.policy import routing
from streams.settings import Settings

DEMO_DATA = Path(__file__).resolve().parent / "data" / "demo"


def fast_settings(run_dir: Path, broker_url: str, estate_file: Path, **overrides: Any) -> Settings:
    """Settings for the embedded stack: short delays so a scenario takes seconds, not hours."""
    values: dict[str, Any] = {
        "data_dir": run_dir,
        "broker_url": broker_url,
        "broker_session_timeout_s": 6.0,
        "broker_commit_interval_s": 0.5,  # a scenario is seen settled soon after it is
        "broker_end_offsets_from_fetch": True,
        "broker_fetch_max_wait_ms": 100,
        "mode": "automatic",
        "rules_file": DEMO_DATA / "rules.yaml",
        "estate_file": estate_file,
        "verify_poll_s": 1.0,
        "verify_max_polls": 30,
        "transient_backoff_s": (1.0, 2.0, 3.0),
        "upstream_recheck_s": 2.0,
        "upstream_max_checks": 15,
        "sink_flush_s": 0.5,
        "ingest_tally_s": 2.0,  # what ingest saw is in the rows within seconds
        "web_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)


def write_estate(run_dir: Path, world: Any, sim: Any, extras: dict[str, Any] | None = None) -> Path:
    """An estate pointing every platform of ``world`` at the simulator ``sim`` (its ``url``,
    ``https_url``): Azure AD and ARM over TLS, secrets in files beside the estate. ``extras``
    adds sections; ``databricks.workspaces.<id>`` keys join that workspace's entry."""
    if extras is None:
        extras = yaml.safe_load((DEMO_DATA / "estate_extras.yaml").read_text()) or {}
    databricks = dict(extras.get("databricks", {}))
    per_workspace = databricks.pop("workspaces", {})  # e.g. sql_warehouse_id, tables
    aad = world.azure_ad
    estate = {
        "credentials": {
            "sim-sp": {
                "type": "client_secret",
                "tenant_id": aad.tenant_id,
                "client_id": aad.client_id,
                "client_secret": f"file:{_secret_file(run_dir, 'sim-sp', aad.client_secret)}",
                "authority": sim.https_url,
            }
        },
        "adf": {
            "arm_url": sim.https_url,
            "factories": {
                f.name: {
                    "subscription_id": f.subscription,
                    "resource_group": f.resource_group,
                    "credential": "sim-sp",
                }
                for f in world.factories
            },
            **extras.get("adf", {}),
        },
        "databricks": {
            "workspaces": {
                w.workspace_id: {
                    "host": f"{sim.url}/databricks/{w.workspace_id}",
                    "token": w.token,
                    **per_workspace.get(w.workspace_id, {}),
                }
                for w in world.workspaces
            },
            **databricks,
        },
        "playbooks": extras.get("playbooks", {}),
        # channels at the simulator's receivers (pipemedic/demo_notifications.py)
        "notifications": at_simulator(
            extras.get("notifications", {}), sim.url, run_dir / "secrets"
        ),
    }
    path = run_dir / "estate.yaml"
    path.write_text(yaml.safe_dump(estate, sort_keys=False))
    return path


def _secret_file(run_dir: Path, name: str, secret: str) -> Path:
    path = run_dir / "secrets" / name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(secret)
    path.chmod(0o600)
    return path


class EmbeddedStack:
    """``with EmbeddedStack(run_dir, world) as stack:`` broker + simulator + one worker."""

    def __init__(
        self,
        run_dir: Path,
        world: Any,
        *,
        estate_extras: dict[str, Any] | None = None,
        start_worker: bool = True,
        **settings_overrides: Any,
    ):
        self.run_dir = Path(run_dir)
        self.world = load_world(world)
        self.estate_extras = estate_extras
        self.start_worker = start_worker
        self.settings_overrides = settings_overrides
        self._stack = contextlib.ExitStack()
        self.broker: EmbeddedBroker | None = None
        self.simulator: Any = None
        self.settings: Settings | None = None
        self.worker: WorkerProcess | None = None
        self._workers_started = 0

    def __enter__(self) -> EmbeddedStack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.broker = self._stack.enter_context(EmbeddedBroker(self.run_dir / "broker"))
            self.simulator = start_in_thread(self.world)
            self._stack.callback(self.simulator.stop)
            estate = write_estate(self.run_dir, self.world, self.simulator, self.estate_extras)
            self.settings = fast_settings(
                self.run_dir,
                self.broker.url,
                estate,
                ca_bundle=self.simulator.ca_file,
                **self.settings_overrides,
            )
            asyncio.run(
                create_topics(
                    self.broker.bootstrap, planned_topics(self.settings), self.settings.partitions
                )
            )
            self._stack.callback(self.stop_worker)
            if self.start_worker:
                self.start_new_worker()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    def start_new_worker(self) -> WorkerProcess:
        assert self.settings is not None
        self._workers_started += 1
        log = self.run_dir / f"worker-{self._workers_started}.log"
        self.worker = WorkerProcess(self.settings, log).start()
        return self.worker

    def start_extra_worker(self) -> WorkerProcess:
        """Another worker in the same consumer group, stopped with the stack: it takes a share
        of every topic's partitions. It has its own web port and data folder, so its recorder
        writes the outcome rows of its partitions to a chDB of its own (chDB allows one owner
        per folder): read such a run's outcomes from the ``outcomes`` topic, not the report."""
        assert self.settings is not None
        self._workers_started += 1
        n = self._workers_started
        settings = self.settings.model_copy(
            update={"web_port": free_port(), "data_dir": self.run_dir / f"worker-{n}-data"}
        )
        worker = WorkerProcess(settings, self.run_dir / f"worker-{n}.log").start()
        self._stack.callback(worker.stop)
        return worker

    def decide(self, chain_id: str, *, approve: bool, by: str, reason: str = "") -> None:
        """A person's yes or no for ``chain_id``, as ``pipemedic approve`` sends it."""
        from pipemedic.runtime import send_decision

        assert self.settings is not None
        asyncio.run(
            send_decision(
                self.bootstrap,
                chain_id,
                approve=approve,
                by=by,
                reason=reason,
                topic_prefix=self.settings.topic_prefix,
                profile=self.settings.topic_profile,
            )
        )

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def kill_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None

    def send_raw(self, payloads: list[bytes]) -> int:
        """Send raw messages; ``${now}``-style placeholders become times as of sending."""
        now = time.time()
        return asyncio.run(
            produce_raw(self.bootstrap, routing.RAW, [relative_times(p, now) for p in payloads])
        )


_PLACEHOLDER = re.compile(rb"\$\{now(?:([+-])(\d+)([smhd]))?(:ms)?\}")
_UNIT_S = {b"s": 1, b"m": 60, b"h": 3600, b"d": 86400}


def relative_times(payload: bytes, now: float) -> bytes:
    """Replay files name times relative to the moment they are sent: ``${now}``,
    ``${now-5m}``, ``${now+2h}`` become ISO-8601 UTC; ``${now-5m:ms}`` becomes epoch ms."""

    def when(match: re.Match[bytes]) -> bytes:
        sign, amount, unit, as_ms = match.groups()
        offset = int(amount) * _UNIT_S[unit] if amount else 0
        at = now + (offset if sign == b"+" else -offset)
        if as_ms:
            return str(int(at * 1000)).encode()
        stamp = datetime.datetime.fromtimestamp(at, datetime.UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()

    return _PLACEHOLDER.sub(when, payload)
