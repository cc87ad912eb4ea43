"""Simulated Azure Data Factory: pipeline runs behind the ARM REST paths (2018-06-01).

Decides how runs evolve. A recovery rerun (``createRun`` with ``referencePipelineRunId`` and
``isRecovery=true``) joins the referenced run's ``runGroupId`` and takes ``isLatest`` from
every other run of the group; a plain ``createRun`` starts a group of its own. A new run shows
``InProgress`` for the pipeline's ``polls_to_finish`` GETs and then ends as the pipeline's
``reruns`` script says (the n-th run of that pipeline takes the n-th outcome; the last one
repeats). Runs from the world file keep their status.

Requests are validated where client bugs hide: ``api-version``, the bearer token, the
subscription/resource group/factory triple (case-insensitive, as in ARM), recovery flags,
rerunning a run that has not finished, query bodies without their required window.

ARM's throttling is simulated per subscription: GETs and the query actions
(``queryPipelineRuns``, ``queryActivityruns``) spend the reads bucket, other POSTs the writes
bucket (sizes and refill rates from the world's ``arm_limits``). Every answer says
what is left in ``x-ms-ratelimit-remaining-subscription-reads``/``-writes``; an empty bucket
answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pipemedic.simulator.aad import AzureADSim
from pipemedic.simulator.protocol import BODY, SimError
from pipemedic.simulator.world import ADF_OUTCOMES, FactorySpec, PipelineSpec, World
from streams.policy.throttle import Rate, TokenBuckets

_FACTORY = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataFactory/factories/{factory}"
)
_OPERANDS = {"PipelineName": "pipeline", "Status": "status", "RunGroupId": "run_group_id"}
# what the throttling check left in the request for the answer's headers
_REMAINING: Any = getattr(web, "RequestKey", lambda name, _type: name)("arm_remaining", object)


@dataclass
class PipelineRunState:
    run_id: str
    pipeline: str
    status: str
    run_group_id: str
    run_start: float
    last_updated: float
    message: str = ""
    is_latest: bool = True
    outcome: str = ""  # how a run started here ends; "" for runs from the world file
    polls_left: int = 0
    run_end: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "runGroupId": self.run_group_id,
            "isLatest": self.is_latest,
            "pipelineName": self.pipeline,
            "parameters": {},
            "invokedBy": {"id": "sim", "name": "Manual", "invokedByType": "Manual"},
            "runStart": _iso(self.run_start),
            "runEnd": _iso(self.run_end) if self.run_end is not None else None,
            "durationInMs": (
                int((self.run_end - self.run_start) * 1000) if self.run_end is not None else None
            ),
            "status": self.status,
            "message": self.message,
            "lastUpdated": _iso(self.last_updated),
            "annotations": [],
        }


class _Factory:
    def __init__(self, spec: FactorySpec, now: float) -> None:
        self.spec = spec
        self.pipelines: dict[str, PipelineSpec] = {p.name.lower(): p for p in spec.pipelines}
        self.started: dict[str, int] = {}  # runs started here, per pipeline
        self.runs: dict[str, PipelineRunState] = {}
        for run in spec.runs:
            start = now - run.age_s
            self.runs[run.run_id] = PipelineRunState(
                run_id=run.run_id,
                pipeline=run.pipeline,
                status=run.status,
                run_group_id=run.run_group_id or run.run_id,
                run_start=start,
                last_updated=start + min(run.age_s, 60.0),
                message=run.message,
                run_end=start + min(run.age_s, 60.0) if run.status in ADF_OUTCOMES else None,
            )
        groups = itertools.groupby(
            sorted(self.runs.values(), key=lambda r: (r.run_group_id, r.run_start)),
            key=lambda r: r.run_group_id,
        )
        for _, members in groups:
            *older, _latest = list(members)
            for run in older:
                run.is_latest = False


class AdfSim:
    def __init__(self, world: World, tokens: AzureADSim, clock: Callable[[], float]) -> None:
        self._world = world
        self._tokens = tokens
        self._clock = clock
        self.factories: dict[tuple[str, str, str], _Factory] = {}
        self._buckets: dict[str, TokenBuckets] = {}
        self.reset()

    def reset(self) -> None:
        now = self._clock()
        limits = self._world.arm_limits
        self._buckets = {
            operation: TokenBuckets(Rate(bucket.capacity, bucket.refill_per_s))
            for operation, bucket in (("reads", limits.reads), ("writes", limits.writes))
        }
        self.factories = {
            (f.subscription.lower(), f.resource_group.lower(), f.name.lower()): _Factory(f, now)
            for f in self._world.factories
        }

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(_FACTORY + "/pipelines/{pipeline}/createRun", self._create_run),
            web.get(_FACTORY + "/pipelineruns/{run_id}", self._get_run),
            web.post(_FACTORY + "/queryPipelineRuns", self._query_runs),
        ]

    def _factory(self, request: web.Request) -> _Factory:
        version = request.query.get("api-version")
        if not version:
            raise SimError(
                400,
                "The api-version query parameter (?api-version=) is required for all requests.",
                "MissingApiVersionParameter",
            )
        if version != self._world.adf_api_version:
            raise SimError(
                400,
                f"The HTTP resource does not support api-version '{version}'.",
                "InvalidApiVersionParameter",
            )
        self._tokens.check(request.headers.get("Authorization"))
        info = request.match_info
        self._throttle(request, info["sub"].lower())
        factory = self.factories.get(
            (info["sub"].lower(), info["rg"].lower(), info["factory"].lower())
        )
        if factory is None:
            raise SimError(
                404,
                f"The Resource 'Microsoft.DataFactory/factories/{info['factory']}' under resource "
                f"group '{info['rg']}' was not found.",
                "ResourceNotFound",
            )
        return factory

    def _throttle(self, request: web.Request, subscription: str) -> None:
        last = request.path.rstrip("/").rsplit("/", 1)[-1].lower()
        operation = "reads" if request.method == "GET" or last.startswith("query") else "writes"
        buckets, now = self._buckets[operation], self._clock()
        wait = buckets.take(subscription, now)
        if wait > 0:
            raise SimError(
                429,
                f"Number of '{operation}' requests for subscription '{subscription}' actor "
                "exceeded. Please try again after some time.",
                "SubscriptionRequestsThrottled",
                retry_after_s=wait,
            )
        remaining = int(buckets.tokens(subscription, now))
        request[_REMAINING] = {f"x-ms-ratelimit-remaining-subscription-{operation}": str(remaining)}

    async def _create_run(self, request: web.Request) -> web.Response:
        factory = self._factory(request)
        pipeline = factory.pipelines.get(request.match_info["pipeline"].lower())
        if pipeline is None:
            raise SimError(
                404, f"Entity {request.match_info['pipeline']} not found", "EntityNotFound"
            )
        if request[BODY] is not None and not isinstance(request[BODY], Mapping):
            raise SimError(
                400, "The request body must be a JSON object of parameters.", "BadRequest"
            )
        query = request.query
        recovery = _flag(query, "isRecovery")
        _flag(query, "startFromFailure")
        reference_id = query.get("referencePipelineRunId")
        group_id = None
        if recovery and not reference_id:
            raise SimError(400, "isRecovery requires referencePipelineRunId.", "BadRequest")
        if reference_id:
            reference = factory.runs.get(reference_id)
            if reference is None:
                raise SimError(
                    404, f"Pipeline run {reference_id} not found.", "PipelineRunNotFound"
                )
            if reference.pipeline.lower() != pipeline.name.lower():
                raise SimError(
                    400,
                    f"Run {reference_id} belongs to pipeline {reference.pipeline}.",
                    "BadRequest",
                )
            if reference.status not in ADF_OUTCOMES:
                raise SimError(
                    409,
                    f"Run {reference_id} is still {reference.status}.",
                    "PipelineRunNotFinished",
                )
            if recovery:
                group_id = reference.run_group_id
        return _answer(request, {"runId": self._start(factory, pipeline, group_id).run_id})

    def _start(
        self, factory: _Factory, pipeline: PipelineSpec, group_id: str | None
    ) -> PipelineRunState:
        now = self._clock()
        nth = factory.started.get(pipeline.name, 0)
        factory.started[pipeline.name] = nth + 1
        run_id = str(uuid.uuid4())
        if group_id is not None:
            for other in factory.runs.values():
                if other.run_group_id == group_id:
                    other.is_latest = False
        run = PipelineRunState(
            run_id=run_id,
            pipeline=pipeline.name,
            status="InProgress",
            run_group_id=group_id or run_id,
            run_start=now,
            last_updated=now,
            outcome=pipeline.reruns[min(nth, len(pipeline.reruns) - 1)],
            polls_left=pipeline.polls_to_finish,
        )
        factory.runs[run_id] = run
        if run.polls_left <= 0:
            self._finish(run, factory)
        return run

    def _finish(self, run: PipelineRunState, factory: _Factory) -> None:
        pipeline = factory.pipelines[run.pipeline.lower()]
        run.status = run.outcome
        run.run_end = run.last_updated = self._clock()
        run.message = pipeline.failure_message if run.outcome == "Failed" else ""

    async def _get_run(self, request: web.Request) -> web.Response:
        factory = self._factory(request)
        run = factory.runs.get(request.match_info["run_id"])
        if run is None:
            raise SimError(
                404,
                f"Pipeline run {request.match_info['run_id']} not found.",
                "PipelineRunNotFound",
            )
        if run.outcome and run.status not in ADF_OUTCOMES:
            if run.polls_left > 0:
                run.polls_left -= 1
            else:
                self._finish(run, factory)
        return _answer(request, run.as_json())

    async def _query_runs(self, request: web.Request) -> web.Response:
        factory = self._factory(request)
        body = request[BODY]
        if not isinstance(body, Mapping):
            raise SimError(400, "The request body is required.", "BadRequest")
        after, before = _window(body)
        runs = [r for r in factory.runs.values() if after <= r.last_updated <= before]
        for condition in body.get("filters") or ():
            runs = [r for r in runs if _passes(r, condition)]
        runs.sort(key=lambda r: r.run_start)
        offset = _offset(body.get("continuationToken"))
        size = self._world.adf_page_size
        page: dict[str, Any] = {"value": [r.as_json() for r in runs[offset : offset + size]]}
        if offset + size < len(runs):
            page["continuationToken"] = f"sim-page-{offset + size}"
        return _answer(request, page)


def _answer(request: web.Request, body: Any) -> web.Response:
    return web.json_response(body, headers=request.get(_REMAINING) or {})


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise SimError(400, f"The value '{query[name]}' is not valid for {name}.", "BadRequest")
    return value == "true"


def _window(body: Mapping[str, Any]) -> tuple[float, float]:
    bounds = []
    for name in ("lastUpdatedAfter", "lastUpdatedBefore"):
        value = body.get(name)
        if not value:
            raise SimError(400, f"The '{name}' property is required.", "BadRequest")
        try:
            when = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise SimError(400, f"'{value}' is not a valid {name}.", "BadRequest") from None
        bounds.append((when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp())
    return bounds[0], bounds[1]


def _passes(run: PipelineRunState, condition: Any) -> bool:
    if not isinstance(condition, Mapping):
        raise SimError(400, "A filter must be an object.", "BadRequest")
    operand, operator = condition.get("operand"), condition.get("operator")
    values = [str(v) for v in condition.get("values") or ()]
    if operator not in ("Equals", "NotEquals", "In", "NotIn") or not values:
        raise SimError(400, f"Invalid filter operator {operator!r} or empty values.", "BadRequest")
    if operand == "LatestOnly":
        return run.is_latest or values[0].lower() != "true"
    if operand not in _OPERANDS:
        raise SimError(
            400, f"The simulator does not support filter operand {operand!r}.", "BadRequest"
        )
    found = str(getattr(run, _OPERANDS[operand])) in values
    return found if operator in ("Equals", "In") else not found


def _offset(token: Any) -> int:
    if not token:
        return 0
    try:
        return int(str(token).removeprefix("sim-page-"))
    except ValueError:
        raise SimError(400, "The continuation token is not valid.", "BadRequest") from None


def _iso(epoch_s: float) -> str:
    # ARM writes 7 fractional digits: 2018-06-16T00:37:44.6257014Z
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
