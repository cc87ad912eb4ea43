"""What every benchmark needs: the embedded stack, progress lines, outcome counting, stats.

Benchmarks are scripts, not tests: each starts what it needs here and stops it in a
``finally`` (children also die with their parent). Figures are ratios against a baseline run
in the same process on the same broker; absolute rates are printed for orientation only.

The platform simulator can run in its own process (``simulator="process"``) so its CPU is
not charged to the benchmark process's GIL; the worker is always a real ``pipemedic worker``
child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipemedic.embedded import EmbeddedBroker, create_topics, die_with_parent, free_port
from pipemedic.runtime import WorkerProcess, settings_env
from pipemedic.simulator import load_world, start_in_thread
from pipemedic.stack import DEMO_DATA, fast_settings, write_estate
from pipemedic.worker import planned_topics
from streams.codecs import Undecodable, items_of
from streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent
_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One line to stderr, stamped with the seconds since the script started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


class Every:
    """``if every(): progress(...)`` at most once per ``seconds``."""

    def __init__(self, seconds: float = 3.0) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            return True
        return False


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an unsorted list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def run_dir(name: str) -> Path:
    """A fresh folder for one run's broker, worker logs and chDB."""
    base = Path(os.environ.get("PIPEMEDIC_BENCH_DIR") or tempfile.gettempdir())
    path = base / f"pipemedic-bench-{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def removed_unless(path: Path, keep: bool) -> Iterator[Path]:
    """Remove ``path`` on the way out unless ``keep``."""
    try:
        yield path
    finally:
        if keep:
            progress(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# ---- the stack -------------------------------------------------------------------------------


class SimulatorProcess:
    """``python -m pipemedic.simulator`` in its own process (its CPU off our GIL)."""

    def __init__(self, world_file: Path, log_path: Path) -> None:
        self.world_file = world_file
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> SimulatorProcess:
        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipemedic.simulator",
                "--world",
                str(self.world_file),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("ab"),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()  # "... serving FILE on http://..."
        match = re.search(r"on (http://\S+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}; see {self.log_path}")
        self.url = match.group(1)
        tls = re.search(
            r"https: (https://\S+) \(CA: (\S+)\)", self.process.stdout.readline().decode()
        )
        if not tls:
            self.stop()
            raise RuntimeError(f"simulator printed no https address; see {self.log_path}")
        self.https_url, self.ca_file = tls.group(1), tls.group(2)
        return self

    def stop(self) -> None:
        stop_child(self.process)
        self.process = None


def stop_child(process: subprocess.Popen[bytes] | None, timeout_s: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class Stack:
    """Broker + simulator + settings; workers are started by the benchmark itself."""

    dir: Path
    broker: EmbeddedBroker
    settings: Settings
    sim_url: str
    sim_pid: int | None = None  # when the simulator runs in its own process
    children: list[Any] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start_worker(self, name: str = "worker", **env: str) -> WorkerProcess:
        worker = WorkerProcess(self.settings, self.dir / f"{name}.log", extra_env=env).start()
        self.children.append(worker)
        return worker

    def start_script(self, script: Path, name: str, settings: Settings, **env: str) -> Any:
        """A Python child configured like a worker (``PIPEMEDIC_*``) plus ``env``."""
        log = (self.dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, str(script)],
            env={**os.environ, **settings_env(settings), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.children.append(process)
        return process

    def kill_children(self) -> None:
        """SIGKILL: for workers whose graceful stop would wait on held delay-tier records."""
        while self.children:
            child = self.children.pop()
            if isinstance(child, WorkerProcess):
                child.kill()
            else:
                child.kill()
                child.wait(timeout=10)

    def stop_children(self) -> None:
        while self.children:
            child = self.children.pop()
            if isinstance(child, WorkerProcess):
                child.stop()
            else:
                stop_child(child)


@contextlib.contextmanager
def stack(
    directory: Path,
    world: Any,
    *,
    simulator: str = "thread",
    extra_topics: Iterable[str] = (),
    estate_extras: dict[str, Any] | None = None,
    **overrides: Any,
) -> Iterator[Stack]:
    """Tansu broker, platform simulator (``thread`` in this process, or ``process``), the
    planned topics plus ``extra_topics``, and :func:`fast_settings` with ``overrides``."""
    with contextlib.ExitStack() as exits:
        broker = exits.enter_context(EmbeddedBroker(directory / "broker"))
        world_obj = load_world(world)
        if simulator == "process":
            world_file = directory / "world.yaml"
            if isinstance(world, dict):
                world_file.write_text(yaml.safe_dump(world, sort_keys=False))
            else:
                shutil.copy(world, world_file)
            sim = SimulatorProcess(world_file, directory / "simulator.log").start()
            exits.callback(sim.stop)
            sim_url, sim_pid, where = sim.url, sim.process.pid, sim
        else:
            handle = start_in_thread(world_obj)
            exits.callback(handle.stop)
            sim_url, sim_pid, where = handle.url, None, handle
        estate = write_estate(directory, world_obj, where, estate_extras)
        overrides = {"ca_bundle": where.ca_file, **overrides}
        settings = fast_settings(directory, broker.url, estate, **overrides)
        topics = [*planned_topics(settings), *extra_topics]
        asyncio.run(create_topics(broker.bootstrap, topics, settings.partitions))
        bench_stack = Stack(directory, broker, settings, sim_url, sim_pid)
        exits.callback(bench_stack.stop_children)
        yield bench_stack


DEMO_WORLD = DEMO_DATA / "world.yaml"


# ---- producing and watching ------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> float:
    """Send unkeyed messages (acks awaited); returns the seconds it took."""
    return await produce_to(bootstrap, [(topic, None, payload) for payload in payloads])


async def produce_to(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> float:
    """Send (topic, key, value) messages (acks awaited); returns the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    started = time.monotonic()
    tick = Every()
    try:
        pending = []
        for i, (topic, key, value) in enumerate(messages):
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                if tick():
                    progress(f"  produced {i + 1}/{len(messages)}")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


class OutcomeWatch:
    """Counts outcome rows by state, keeps ``at``/``first_seen_at`` extremes per state."""

    def __init__(self) -> None:
        self.states: Counter[str] = Counter()
        self.first_at: dict[str, int] = {}
        self.last_at: dict[str, int] = {}
        self.min_first_seen: int | None = None

    def see(self, row: dict[str, Any]) -> None:
        state = row["state"]
        self.states[state] += 1
        at = row["at"]
        self.first_at[state] = min(self.first_at.get(state, at), at)
        self.last_at[state] = max(self.last_at.get(state, at), at)
        seen = row.get("first_seen_at") or 0
        if seen and (self.min_first_seen is None or seen < self.min_first_seen):
            self.min_first_seen = seen


async def follow(
    bootstrap: str,
    topic: str | dict[str, str | None],
    record: str | None = None,
    *,
    done: Callable[[], bool],
    on_message: Callable[[Any, Any], None],
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    status: Callable[[], str] = lambda: "",
    log: Path | None = None,
) -> bool:
    """Read ``topic`` from the beginning (no group) until ``done()``; ``on_message(msg,
    value)`` gets every record, ``value`` decoded as ``record`` (None: raw bytes). Several
    topics: ``topic`` maps each to its record. ``log``: its end is printed if ``alive()``
    turns false."""
    records = topic if isinstance(topic, dict) else {topic: record}
    consumer = AIOKafkaConsumer(
        *records,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    tick = Every()
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for tp, messages in batches.items():
                kind = records[tp.topic]
                for message in messages:
                    try:
                        values = items_of(kind, message.value) if kind else [message.value]
                    except Undecodable:  # the worker dead-letters it
                        continue
                    for value in values:  # a batch message: each of its records
                        on_message(message, value)
            if done():
                return True
            if not alive():
                progress(f"  a child process died; the end of its log ({log}):")
                if log is not None and log.exists():
                    for line in log.read_text(errors="replace").splitlines()[-25:]:
                        print(f"    {line}", file=sys.stderr)
                return False
            if tick():
                progress(f"  {status()}")
        return False
    finally:
        await consumer.stop()


async def committed_all(
    bootstrap: str, group: str, topics: Iterable[str], partitions: int, timeout_s: float
) -> bool:
    """Wait until ``group`` has committed every message of ``topics`` (true end offsets)."""
    from aiokafka.structs import TopicPartition

    from pipemedic.tansu import true_end_offsets

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    deadline = time.monotonic() + timeout_s
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        while time.monotonic() < deadline:
            ends = await true_end_offsets(bootstrap, await probe.end_offsets(tps))
            behind = [tp for tp in tps if ends[tp] and (await probe.committed(tp) or 0) < ends[tp]]
            if not behind:
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await probe.stop()


# ---- profiling -------------------------------------------------------------------------------


class PySpy:
    """``py-spy record`` attached to a child for as long as the measurement runs.

    Writes collapsed stacks (``--format raw``); :func:`hot_spots` summarises them.
    Needs ``pip install py-spy`` and ptrace rights (root, or ptrace_scope 0).
    """

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(out.parent / f"{out.stem}.py-spy.log").open("ab"),
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def stop(self) -> Path:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.out


def hot_spots(collapsed: Path, top: int = 40) -> str:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack_text.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "own time:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive time:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)" so lines of one function merge
    match = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})"


# ---- where the CPU went ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per named process between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.begin: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.begin = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        self.wall = time.monotonic() - self._t0
        self.used = {name: cpu_seconds(pid) - self.begin[name] for name, pid in self.pids.items()}

    def line(self) -> str:
        if not self.wall:
            return "cpu: not measured"
        parts = [f"{name} {used / self.wall:.0%}" for name, used in self.used.items()]
        return f"cpu use over {self.wall:.1f}s (100% = one core): " + ", ".join(parts)


async def topic_counts(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    """Messages per topic (all partitions), from true end offsets (Tansu's ListOffsets
    undercounts after multi-record batches, see pipemedic/tansu.py)."""
    from aiokafka.structs import TopicPartition

    from pipemedic.tansu import true_end_offsets

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await probe.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (probe.partitions_for_topic(topic) or ())
        ]
        if not tps:
            await probe._client.force_metadata_update()
            tps = [
                TopicPartition(topic, p)
                for topic in topics
                for p in (probe.partitions_for_topic(topic) or ())
            ]
        ends = await true_end_offsets(bootstrap, await probe.end_offsets(tps))
    finally:
        await probe.stop()
    counts: Counter[str] = Counter()
    for tp, end in ends.items():
        counts[tp.topic] += end
    return dict(counts)


# ---- diagnostic levers (never product changes: they patch a benchmark's child at start) ------

_FETCH_WAIT_PATCH = '''\
"""Written by bench/common.py: the worker's consumer fetch_max_wait_ms (Faust fixes 1500)."""
import os

_wait = int(os.environ.get("BENCH_FETCH_MAX_WAIT_MS", "0"))
if _wait:
    import aiokafka

    _init = aiokafka.AIOKafkaConsumer.__init__

    def __init__(self, *args, **kwargs):
        if "fetch_max_wait_ms" in kwargs:
            kwargs["fetch_max_wait_ms"] = _wait
        _init(self, *args, **kwargs)

    aiokafka.AIOKafkaConsumer.__init__ = __init__
'''


def fetch_wait_env(directory: Path, wait_ms: int | None) -> dict[str, str]:
    """Environment that makes a worker child fetch with ``wait_ms`` instead of Faust's fixed
    1500 ms (a ``sitecustomize`` in the run folder). Tansu holds a fetch that finds no data
    for the whole wait even when data arrives meanwhile, and aiokafka sends no new fetch to a
    node while one is in flight, so this wait bounds how fast a resumed (delay tier) or idle
    partition is read again. A diagnostic, not a product setting."""
    if not wait_ms:
        return {}
    patch = directory / "fetch-wait-patch"
    patch.mkdir(parents=True, exist_ok=True)
    (patch / "sitecustomize.py").write_text(_FETCH_WAIT_PATCH)
    path = os.pathsep.join(p for p in (str(patch), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "BENCH_FETCH_MAX_WAIT_MS": str(wait_ms)}


# ---- client micro-benchmarks -----------------------------------------------------------------


@dataclass
class CallRound:
    """One measured round of one client variant: wall time and this process's CPU."""

    variant: str
    calls: int
    wall_s: float
    cpu_s: float
    errors: Counter[str]

    @property
    def per_s(self) -> float:
        return self.calls / self.wall_s

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu_s / self.calls


async def call_round(
    variant: str,
    actions: Iterable[Callable[[], Awaitable[Any]]],
    concurrency: int,
    calls_per_action: int,
) -> CallRound:
    """Run ``actions`` from ``concurrency`` lanes on this loop; CPU is ``process_time`` (every
    thread of this process). A failed action is counted, not fatal: a rate is still a rate."""
    errors: Counter[str] = Counter()
    queue = iter(list(actions))
    done = 0

    async def lane() -> None:
        nonlocal done
        for action in queue:
            try:
                await action()
            except Exception as exc:
                errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
            done += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return CallRound(variant, calls_per_action * done, wall, cpu, errors)


def median_rounds(rounds: list[CallRound]) -> dict[str, tuple[CallRound, Counter[str]]]:
    """Per variant, in first-seen order: the round with the median CPU per call, and the
    errors of all its rounds."""
    result: dict[str, tuple[CallRound, Counter[str]]] = {}
    for name in dict.fromkeys(r.variant for r in rounds):
        mine = sorted((r for r in rounds if r.variant == name), key=lambda r: r.cpu_us)
        result[name] = (mine[len(mine) // 2], sum((r.errors for r in mine), Counter()))
    return result
