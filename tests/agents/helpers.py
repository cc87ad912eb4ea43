"""Helpers the agent tests share: a manual clock, a topic that records what would be sent,
a topology made of such topics, and requests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

from streams.policy.model import ActionRequest, Alert, Classification


@dataclass
class RecordingTopic:
    """Records what is sent. Like a Faust topic, ``send`` returns what completes once the
    broker acknowledges: at once, or, with ``hold``, when the test calls ``acknowledge``."""

    sent: list[tuple[str, bytes, int | None]] = field(default_factory=list)
    fail: bool = False
    hold: bool = False
    unacknowledged: list[asyncio.Future] = field(default_factory=list)
    headers: list[object] = field(default_factory=list)  # each send's headers, in order

    async def send(self, *, key, value, partition=None, value_serializer="raw", headers=None):
        assert value_serializer == "raw"  # the outbox encodes batches itself
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((key, value, partition))
        self.headers.append(headers)
        return self._delivery()

    def _delivery(self) -> asyncio.Future:
        delivery = asyncio.get_running_loop().create_future()
        if self.hold:
            self.unacknowledged.append(delivery)
        else:
            delivery.set_result(None)
        return delivery

    def acknowledge(self, error: Exception | None = None) -> None:
        for delivery in self.unacknowledged:
            if error is None:
                delivery.set_result(None)
            else:
                delivery.set_exception(error)
        self.unacknowledged.clear()


def request(chain_id: str, due_at: int) -> ActionRequest:
    found = Alert(alert_id=chain_id, source="adf", kind="pipeline_run", scope="f", run_id="r")
    return ActionRequest(
        action_id=f"{chain_id}#1:retry_pipeline",
        chain_id=chain_id,
        dedup_key=chain_id,
        action="retry_pipeline",
        step="execute",
        attempt=1,
        max_attempts=3,
        due_at=due_at,
        alert=found,
        classification=Classification("GatewayTimeout", "low", "retry_pipeline", 3, (5,), "t"),
    )


class _Timer:
    def __init__(self, due_ms: float, callback: Callable[[], object]) -> None:
        self.due_ms = due_ms
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A :class:`streams.clock.Clock` whose time moves only when a test says so.

    ``await clock.advance(s)`` fires every timer (and wakes every ``sleep``) that falls due
    within ``s`` seconds, in due order, letting the event loop run the work they start.
    """

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        return int(self.now)

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(self.now + max(delay_s, 0.0) * 1000, callback)
        heapq.heappush(self._timers, (timer.due_ms, next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        self.call_later(seconds, lambda: woken.done() or woken.set_result(None))
        await woken

    @property
    def pending(self) -> int:
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    async def advance(self, seconds: float) -> None:
        until = self.now + seconds * 1000
        await settle()
        while self._timers and self._timers[0][0] <= until:
            due_ms, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, due_ms)
            timer.callback()
            await settle()
        self.now = until
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def fake_topology(*, partitions: int = 4, tiers: tuple[int, ...] = (5, 30), clock=None):
    """What the agents read of a :class:`streams.app.Topology`, with recording topics."""
    return SimpleNamespace(
        settings=SimpleNamespace(
            partitions=partitions, executor_linger_s=0.05, pause_recheck_s=5.0
        ),
        classified=RecordingTopic(),
        chain_events=RecordingTopic(),
        outcomes=RecordingTopic(),
        dead_letter=RecordingTopic(),
        tiers=tiers,
        actions={
            "retry_pipeline": RecordingTopic(),
            "manual": RecordingTopic(),
            "restart_cluster": RecordingTopic(),
        },
        delays={t: RecordingTopic() for t in tiers},
        notify=RecordingTopic(),  # notices for people (agents/notify.py)
        clock=clock or ManualClock(),
        # the default topic profile: no topic is shared, no record needs a lane
        profile="default",
        headers_for=lambda name: None,
        carries=lambda lane, event: True,
    )


async def drive(clock: ManualClock, awaitable, *, step_s: float = 0.01, max_steps: int = 1000):
    """Await ``awaitable`` while moving ``clock`` on in steps of ``step_s`` (for code that
    lingers or backs off on the clock); fails rather than spin for ever."""
    task = asyncio.ensure_future(awaitable)
    for _ in range(max_steps):
        await settle()
        if task.done():
            return task.result()
        await clock.advance(step_s)
    task.cancel()
    raise AssertionError(f"still waiting after {max_steps * step_s:g} s of clock time")


def fake_faust_app(*, rebalancing=False, in_recovery=False, recovered=True, assigned=("tp",)):
    """What readiness reads of a Faust app."""
    completed = asyncio.Event()
    if recovered:
        completed.set()
    return SimpleNamespace(
        rebalancing=rebalancing,
        in_recovery=in_recovery,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
        consumer=SimpleNamespace(assignment=lambda: set(assigned)),
    )
