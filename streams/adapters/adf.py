"""Azure Data Factory pipeline runs over the ARM REST API (api-version 2018-06-01).

Decides how pipemedic talks to ADF: reruns are always ADF's native *recovery* reruns
(``createRun`` with ``referencePipelineRunId``, ``isRecovery`` and ``startFromFailure``), so a
rerun joins the failed run's ``runGroupId`` and ``isLatest`` says which attempt is current;
that group is what makes a repeated action detectable (:meth:`ADFClient.latest_in_group`).

Only factories named in :class:`ADFConfig` are reachable (anything else is
:class:`OutsideEstate`), and names and run ids taken from alerts only ever become escaped
path segments. Each factory names its credential; its bearer token comes from that
``azure-identity`` credential, which caches and refreshes it ahead of expiry. ARM refusing
the token (401) is :attr:`ErrorKind.AUTH`, as in Azure's own SDKs: there is no stale token
of ours to drop.

ARM throttles per subscription and operation type (GET: reads; POST/PUT: writes). A call
takes a token from our bucket for its subscription first (:mod:`streams.policy.throttle`);
an empty bucket raises :class:`HeldBack` without sending, and every answer's
``x-ms-ratelimit-remaining-subscription-*`` lowers the bucket to what ARM says is left. A 429
still becomes ``THROTTLED`` with its ``Retry-After`` (:mod:`streams.adapters.http`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from streams.adapters.credentials import ARM_SCOPE, bearer_token
from streams.adapters.errors import ErrorKind, HeldBack, OutsideEstate, PlatformError
from streams.adapters.http import error_from_response, json_body, path_segment, send_json
from streams.policy.throttle import ARM_READS, ARM_WRITES, Rate, TokenBuckets

FINAL_STATUSES = frozenset({"Succeeded", "Failed", "Cancelled"})

# ADF keeps run history for 45 days; a group lookup never needs to look further back.
RUN_RETENTION = dt.timedelta(days=45)


@dataclass(frozen=True)
class FactoryRef:
    subscription_id: str
    resource_group: str
    credential: str = "default"  # a name under the estate's ``credentials:``


@dataclass(frozen=True)
class ADFConfig:
    factories: Mapping[str, FactoryRef]
    arm_url: str = "https://management.azure.com"
    api_version: str = "2018-06-01"
    timeout_s: float = 30.0
    max_pages: int = 50  # queryPipelineRuns pages followed before giving up
    reads: Rate = ARM_READS  # per subscription
    writes: Rate = ARM_WRITES


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    pipeline: str
    status: str  # Queued | InProgress | Succeeded | Failed | Canceling | Cancelled
    run_group_id: str = ""
    is_latest: bool = True
    message: str = ""
    run_start: int = 0  # epoch ms, 0 when not started
    last_updated: int = 0  # epoch ms

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


def arm_operation(method: str, last_segment: str) -> str:
    """The ARM throttling bucket a call spends: GETs and the query actions (``POST
    .../queryPipelineRuns``, ``.../queryActivityruns``: ARM answers them with
    ``x-ms-ratelimit-remaining-subscription-reads``) are reads, other POSTs writes."""
    if method == "GET" or last_segment.lower().startswith("query"):
        return "reads"
    return "writes"


class ADFClient:
    def __init__(
        self,
        config: ADFConfig,
        credential_for: Callable[[str], AsyncTokenCredential],
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._credential_for = credential_for
        self._http = http
        self._clock = clock
        self._buckets = {"reads": TokenBuckets(config.reads), "writes": TokenBuckets(config.writes)}

    async def rerun_from_failure(self, factory: str, pipeline: str, run_id: str) -> str:
        """Start a recovery rerun of ``run_id`` from its failed activities; returns the new run id."""
        recovery = {
            "referencePipelineRunId": run_id,
            "isRecovery": "true",
            "startFromFailure": "true",
        }
        body = await self._call(
            "POST",
            factory,
            ("pipelines", path_segment(pipeline, "pipeline"), "createRun"),
            params=recovery,
            json={},
        )
        new_run_id = body.get("runId")
        if not isinstance(new_run_id, str) or not new_run_id:
            raise PlatformError(ErrorKind.TRANSIENT, "createRun answered without a runId")
        return new_run_id

    async def get_run(self, factory: str, run_id: str) -> PipelineRun:
        body = await self._call(
            "GET", factory, ("pipelineruns", path_segment(run_id, "pipeline run id"))
        )
        return _pipeline_run(body)

    async def query_runs(
        self,
        factory: str,
        *,
        after: dt.datetime | int,
        before: dt.datetime | int,
        pipeline: str | None = None,
        status: str | None = None,
        run_group_id: str | None = None,
        latest_only: bool = False,
    ) -> list[PipelineRun]:
        """Runs last updated in ``[after, before]`` (datetimes or epoch ms), all pages."""
        filters = [
            {"operand": operand, "operator": "Equals", "values": [value]}
            for operand, value in (
                ("PipelineName", pipeline),
                ("Status", status),
                ("RunGroupId", run_group_id),
                ("LatestOnly", "true" if latest_only else None),
            )
            if value is not None
        ]
        query: dict[str, Any] = {
            "lastUpdatedAfter": _iso(after),
            "lastUpdatedBefore": _iso(before),
            "filters": filters,
        }
        runs: list[PipelineRun] = []
        for _ in range(self._config.max_pages):
            body = await self._call("POST", factory, ("queryPipelineRuns",), json=query)
            runs.extend(_pipeline_run(item) for item in body.get("value") or ())
            token = body.get("continuationToken")
            if not token:
                return runs
            query = {**query, "continuationToken": token}
        raise PlatformError(
            ErrorKind.BAD_REQUEST,
            f"queryPipelineRuns in {factory}: more than {self._config.max_pages} pages; narrow the window",
        )

    async def latest_in_group(self, factory: str, run_group_id: str) -> PipelineRun | None:
        """The current attempt of a recovery group, or ``None`` if ADF knows no such group."""
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        runs = await self.query_runs(
            factory,
            after=now - RUN_RETENTION,
            before=now + dt.timedelta(days=1),
            run_group_id=run_group_id,
            latest_only=True,
        )
        if not runs:
            return None
        latest = [run for run in runs if run.is_latest] or runs
        return max(latest, key=lambda run: (run.run_start, run.last_updated))

    async def _call(
        self,
        method: str,
        factory: str,
        tail: tuple[str, ...],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> dict:
        name, ref = self._factory(factory)
        url = f"{self._factory_url(name, ref)}/{'/'.join(tail)}"
        query = {"api-version": self._config.api_version, **(params or {})}
        what = f"ADF {method} {'/'.join(tail)} in {factory}"
        operation = arm_operation(method, tail[-1])
        buckets, scope = self._buckets[operation], f"arm|{ref.subscription_id.lower()}|{operation}"
        wait = buckets.take(scope, self._clock())
        if wait > 0:
            raise HeldBack(what, wait)
        token = await bearer_token(self._credential_for(ref.credential), ARM_SCOPE, what)
        response = await send_json(
            self._http,
            method,
            url,
            query=query,
            body=json,
            headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
            timeout_s=self._config.timeout_s,
            what=what,
        )
        remaining = response.headers.get(f"x-ms-ratelimit-remaining-subscription-{operation}")
        if remaining is not None and remaining.isdigit():
            buckets.observe(scope, float(remaining), self._clock())
        if not response.is_success:  # a 3xx too: redirects are not followed
            raise error_from_response(response, what)
        return json_body(response, what)

    def _factory(self, factory: str) -> tuple[str, FactoryRef]:
        ref = self._config.factories.get(factory)
        if ref is None:  # ARM names are case-insensitive; alert resource ids come lowercased
            factory, ref = next(
                (
                    (name, r)
                    for name, r in self._config.factories.items()
                    if name.lower() == factory.lower()
                ),
                (factory, None),
            )
        if ref is None:
            raise OutsideEstate(f"ADF factory {factory!r}")
        return factory, ref

    def _factory_url(self, factory: str, ref: FactoryRef) -> str:
        return (
            f"{self._config.arm_url.rstrip('/')}"
            f"/subscriptions/{path_segment(ref.subscription_id, 'subscription')}"
            f"/resourceGroups/{path_segment(ref.resource_group, 'resource group')}"
            f"/providers/Microsoft.DataFactory/factories/{path_segment(factory, 'factory')}"
        )


def _pipeline_run(body: Mapping[str, Any]) -> PipelineRun:
    return PipelineRun(
        run_id=str(body.get("runId") or ""),
        pipeline=str(body.get("pipelineName") or ""),
        status=str(body.get("status") or ""),
        run_group_id=str(body.get("runGroupId") or ""),
        is_latest=bool(body.get("isLatest", True)),
        message=str(body.get("message") or ""),
        run_start=_epoch_ms(body.get("runStart")),
        last_updated=_epoch_ms(body.get("lastUpdated")),
    )


def _epoch_ms(value: Any) -> int:
    """ARM timestamps (``2018-06-16T00:37:44.6257014Z``) as epoch ms; 0 if absent or odd."""
    if not isinstance(value, str) or not value:
        return 0
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _iso(when: dt.datetime | int) -> str:
    if isinstance(when, int):
        when = dt.datetime.fromtimestamp(when / 1000, dt.UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
