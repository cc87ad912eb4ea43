"""Executors: one agent per action topic, many actions in flight per worker.

Each request runs its action's procedure (:mod:`agents.procedures`), and the report or the
platform error is turned into effects by :mod:`streams.policy.steps`: verify later, retry the
step, re-enter the chain, or hand over to people.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from agents import metrics
from agents.common import CRASH_WORKER, InFlight, log, run_concurrently
from agents.outbox import SharedOutbox
from agents.platforms import Platforms, Procedure
from agents.procedures import procedure_for
from streams.adapters.errors import ErrorKind, HeldBack, PlatformError
from streams.app import Topology
from streams.codecs import decode
from streams.policy import routing
from streams.policy.breaker import Breakers, target_of
from streams.policy.model import Action, ActionRequest, Step
from streams.policy.names import INVALID_NAME, invalid_name
from streams.policy.pauses import Pauses, hold
from streams.policy.steps import (
    Effects,
    StepConfig,
    after_error,
    after_step,
    defer,
)

# A step our own rate limit held back waits at least MIN_HOLD_S, doubled for each time the
# same step was held back before (up to MAX_HOLD_S), plus up to HOLD_SPREAD_S chosen by its
# action id: when many steps contend for one quota, they come back spread out and ever less
# often, instead of all retrying every second and spending the worker on being refused.
MIN_HOLD_S = 1.0
MAX_HOLD_S = 30.0
HOLD_SPREAD_S = 2.0
HELD_BACK = "held_back"  # how often this step was held back, in its context


def hold_s(retry_after_s: float | None, times_held: int, action_id: str) -> float:
    wait = max(retry_after_s or 0.0, MIN_HOLD_S) * 2 ** min(times_held, 10)
    return min(wait, MAX_HOLD_S) + spread_s(action_id)


def spread_s(action_id: str) -> float:
    digest = hashlib.blake2b(action_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest) % 1000 / 1000 * HOLD_SPREAD_S


class StepRunner:
    """Runs one action's steps; ``topology`` is read by the dead-letter path too.

    ``procedure`` defaults to the action's own (:func:`agents.procedures.procedure_for`);
    the time and the timers are ``topology.clock``'s.
    """

    def __init__(
        self,
        topology: Topology,
        platforms: Platforms,
        action: str,
        config: StepConfig,
        breakers: Breakers,
        *,
        procedure: Procedure | None = None,
        pauses: Pauses | None = None,
    ):
        self.topology = topology
        self.clock = topology.clock
        # steps finishing together share messages
        self.outbox = SharedOutbox(topology, linger_s=topology.settings.executor_linger_s)
        self.platforms = platforms
        self.procedure = procedure or procedure_for(action, platforms.estate)
        self.config = config
        self.breakers = breakers
        self.pauses = pauses or Pauses()
        self.gated = action != Action.MANUAL.value  # paging people is never held back

    async def __call__(self, event: Any) -> None:
        request = ActionRequest.from_dict(decode("action_request", event.value))
        await self.outbox.send(await self.run(request), now=self.clock.now_ms())

    def _counted(self, request: ActionRequest, result: str) -> None:
        metrics.STEPS.labels(request.action, request.step, result).inc()

    async def run(self, request: ActionRequest) -> Effects:
        """One step of ``request``: what it leads to (nothing sent yet)."""
        now = self.clock.now_ms()
        alert = request.alert
        refused = invalid_name(alert) if self.gated else None
        if refused is not None:  # alert content never shapes a platform call
            self._counted(request, INVALID_NAME)
            return after_error(
                request,
                kind=INVALID_NAME,
                retryable=False,
                retry_after_s=None,
                detail=refused,
                now_ms=now,
                config=self.config,
            )
        # the kill switch holds new platform writes; verification (reads) goes on
        pause = (
            self.pauses.covering(alert)
            if self.gated and request.step == Step.EXECUTE.value
            else None
        )
        if pause is not None:
            self._counted(request, "paused")
            recheck_s = self.topology.settings.pause_recheck_s
            return hold(request, pause, recheck_s=recheck_s, now_ms=now)
        breaker = self.breakers.for_target(target_of(alert.source, alert.scope))
        wait_s = breaker.wait_s(now / 1000) if self.gated else 0.0
        if wait_s > 0:
            reason = f"circuit open for {alert.source} {alert.scope}"
            self._counted(request, "breaker_open")
            return defer(request, wait_s=wait_s, reason=reason, now_ms=now)
        try:
            report = await self.procedure(request, self.platforms, now)
        except HeldBack as held:
            # our own rate limit: nothing was sent, nothing failed, no retry is spent; the
            # steps held together come back spread out, not all at the same instant
            self._counted(request, "held_back")
            times = int(request.context.get(HELD_BACK, "0"))
            wait_s = hold_s(held.retry_after_s, times, request.action_id)
            deferred = defer(request, wait_s=wait_s, reason=str(held), now_ms=self.clock.now_ms())
            (again,) = deferred.requests
            again = replace(again, context={**again.context, HELD_BACK: str(times + 1)})
            # one row for the first hold of a step; the holds after it say nothing new
            outcomes = () if times else deferred.outcomes
            return replace(deferred, requests=(again,), outcomes=outcomes)
        except PlatformError as error:
            self._counted(request, f"error:{error.kind.value}")
            if error.kind in (ErrorKind.TRANSIENT, ErrorKind.THROTTLED):
                breaker.failed(self.clock.now_ms() / 1000)
            return after_error(
                request,
                kind=error.kind.value,
                retryable=error.retryable,
                retry_after_s=error.retry_after_s,
                detail=str(error),
                now_ms=self.clock.now_ms(),
                config=self.config,
            )
        else:
            self._counted(request, report.status.value)
            breaker.succeeded()
            return after_step(request, report, now_ms=self.clock.now_ms(), config=self.config)


def register(topology: Topology, platforms: Platforms, pauses: Pauses | None = None) -> None:
    app = topology.app
    settings = topology.settings
    config = settings.step_config()
    # one breaker per platform target, shared by every action of this worker
    breakers = Breakers(settings.breaker_threshold, settings.breaker_cooldown_s)
    metrics.LIVE.add(
        "pipemedic_breakers_open",
        "Platform targets whose circuit breaker is open on this worker",
        (),
        lambda: {(): sum(1 for b in breakers.by_target.values() if b.is_open)},
    )
    in_flight = InFlight()  # a revoked partition's actions end here before another worker's begin
    for action, topic in topology.actions.items():
        runner = StepRunner(topology, platforms, action, config, breakers, pauses=pauses)
        app.agent(topic, name=f"execute-{action}", **CRASH_WORKER)(
            _body(runner, settings.executor_concurrency, in_flight, routing.action_topic(action))
        )

    @app.on_partitions_revoked.connect
    async def actions_end_here(app: Any, revoked: Any, **kwargs: Any) -> None:
        still = await in_flight.settle(revoked, timeout_s=settings.http_timeout_s * 2)
        if still:
            log.warning("%d actions of revoked partitions still running after the wait", still)


def _body(runner: StepRunner, limit: int, in_flight: InFlight, lane: str) -> Any:
    async def execute(stream: Any) -> None:
        await run_concurrently(runner.topology, stream, limit, runner, in_flight, lane=lane)

    return execute
