"""Run workers as child processes and watch what they produce.

Used by ``pipemedic demo``, the integration tests and the benchmarks: a worker is a real
``pipemedic worker`` process configured through ``PIPEMEDIC_*`` variables, so a test can kill
it with SIGKILL and start another exactly as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from pipemedic import kafka
from pipemedic.embedded import die_with_parent
from streams.codecs import Undecodable, items_of
from streams.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build exactly these settings."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, tuple | list | dict):
            value = json.dumps(list(value) if not isinstance(value, dict) else value)
        env[f"PIPEMEDIC_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """One ``pipemedic worker`` child process with its log file."""

    def __init__(self, settings: Settings, log_path: Path, *, extra_env: Mapping[str, str] = ()):
        self.settings = settings
        self.log_path = Path(log_path)
        self.extra_env = dict(extra_env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings), **self.extra_env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipemedic", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Graceful stop (SIGTERM: Faust flushes and commits), SIGKILL if it hangs."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        code = self.process.returncode
        self.process = None
        return code

    @property
    def web_url(self) -> str:
        host = self.settings.web_host
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: ask on loopback
            host = "127.0.0.1"
        return f"http://{host}:{self.settings.web_port}"

    def metrics(self) -> dict[str, float]:
        """The worker's ``GET /metrics`` samples, ``name{label="value",...}`` -> value."""
        text = httpx.get(f"{self.web_url}/metrics", timeout=5.0, trust_env=False).text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def wait_ready(self, timeout_s: float = 60.0) -> WorkerProcess:
        """Block until the worker's ``GET /ready`` answers 200: joined to its group, tables
        recovered. Raises ``TimeoutError`` (or ``RuntimeError`` if the process died)."""
        url = f"{self.web_url}/ready"
        deadline = time.monotonic() + timeout_s
        reason = "not answering"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise RuntimeError(f"worker exited before it was ready; see {self.log_path}")
                try:
                    answer = client.get(url)
                    if answer.status_code == 200:
                        return self
                    reason = answer.json().get("reason", answer.text)
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.1)
        raise TimeoutError(
            f"worker not ready after {timeout_s:.0f}s ({reason}); see {self.log_path}"
        )

    def kill(self) -> None:
        """kill -9: no flush, no commit; what was not committed is redelivered."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def produce_raw(
    bootstrap: str | kafka.ClientOptions,
    topic: str,
    payloads: Iterable[bytes],
    *,
    key: bytes | None = None,
) -> int:
    """Send raw messages; returns how many the broker acknowledged. ``bootstrap``: an
    address or the client options of :mod:`pipemedic.kafka`."""
    producer = kafka.producer(bootstrap, linger_ms=5)
    await producer.start()
    try:
        deliveries = [await producer.send(topic, payload, key=key) for payload in payloads]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return len(deliveries)


class RecordTail:
    """Follow an Avro topic from the beginning (no consumer group: a pure observer).

    ``record`` names the item type; on the batched topics (outcomes, chain events, classified
    alerts) ``poll`` returns the items of every batch, in order."""

    def __init__(self, bootstrap: str, topic: str, record: str):
        self.record = record
        self.skipped = 0  # messages that did not decode as ``record``
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )

    async def __aenter__(self) -> RecordTail:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, timeout_ms: int = 500) -> list[dict[str, Any]]:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms)
        found = []
        for messages in batches.values():
            for message in messages:
                try:
                    found += items_of(self.record, message.value)
                except Undecodable:  # the worker dead-letters it; an observer just goes on
                    self.skipped += 1
        return found


async def send_decision(
    bootstrap: str | kafka.ClientOptions,
    chain_id: str,
    *,
    approve: bool,
    by: str,
    reason: str = "",
    topic_prefix: str = "",
    profile: str = "default",
) -> None:
    """A person's yes or no for the action a chain waits on (approval mode), on the chain
    events of the pipeline named by ``topic_prefix`` and its topic ``profile``."""
    from streams.codecs import encode_items
    from streams.policy.model import Alert, ChainEvent, ChainEventKind
    from streams.policy.routing import CHAIN_EVENTS, destination

    kind = ChainEventKind.APPROVED if approve else ChainEventKind.REJECTED
    detail = f"by {by}" + (f": {reason}" if reason else "")
    event = ChainEvent(
        kind=kind.value,
        chain_id=chain_id,
        dedup_key="",
        at=int(time.time() * 1000),
        alert=Alert(alert_id=f"decision:{chain_id}", source="", kind=""),
        detail=detail,
    )
    topic, headers = destination(CHAIN_EVENTS, profile, topic_prefix)
    value = encode_items("chain_event", [event.to_dict()])
    await _send_in_order(bootstrap, [(topic, chain_id.encode(), value)], headers)


async def send_pause(
    bootstrap: str | kafka.ClientOptions,
    scope: str,
    *,
    paused: bool,
    by: str,
    reason: str = "",
    topic_prefix: str = "",
) -> None:
    """The kill switch: pause (or resume) new actions on ``scope`` for every worker, and its
    audit row. The control record goes first: the row never says more than was done."""
    from streams.codecs import encode, encode_items
    from streams.policy.model import Pause
    from streams.policy.pauses import control_row
    from streams.policy.routing import CONTROL, OUTCOMES, prefixed

    pause = Pause(scope=scope, paused=paused, by=by, reason=reason, at=int(time.time() * 1000))
    await _send_in_order(
        bootstrap,
        [
            (prefixed(CONTROL, topic_prefix), scope.encode(), encode("pause", pause.to_dict())),
            (
                prefixed(OUTCOMES, topic_prefix),
                f"control|{scope}".encode(),
                encode_items("outcome", [control_row(pause).to_dict()]),
            ),
        ],
    )


async def _send_in_order(
    bootstrap: str | kafka.ClientOptions,
    messages: Iterable[tuple[str, bytes, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Send ``(topic, key, value)`` messages, each acknowledged before the next goes."""
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()
