"""ADF procedures: rerun from failure, and the upstream check that waits before it.

Before a rerun, the runs of the failed run's ``runGroupId`` are looked up: a rerun found
already begun (a redelivered request) is adopted instead of starting another.
"""

from __future__ import annotations

from agents.platforms import Platforms, adopt_status
from streams.policy import remedies
from streams.policy.model import ActionRequest, Step
from streams.policy.steps import Status, StepReport

DAY_MS = 24 * 3600 * 1000


async def retry_pipeline(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    if request.step == Step.VERIFY.value:
        return await verify_adf_run(request, p)
    return await _rerun(request, p)


async def upstream_check(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    if request.step == Step.VERIFY.value:
        return await verify_adf_run(request, p)
    alert = request.alert
    deps = p.estate.dependencies.get(alert.scope, {})
    upstream = remedies.upstream_pipelines(
        alert.pipeline, deps, use_naming_convention=p.estate.naming_convention_fallback
    )
    if upstream:
        adf = p.need_adf()
        latest: dict[str, str] = {}
        for name in upstream:
            runs = await adf.query_runs(
                alert.scope, after=now_ms - DAY_MS, before=now_ms, pipeline=name, latest_only=True
            )
            newest = max(runs, key=lambda r: (r.run_start, r.last_updated), default=None)
            latest[name] = newest.status if newest else ""
        ready, detail = remedies.upstream_ready(latest)
        if not ready:
            return StepReport(Status.WAITING, detail=detail)
    return await _rerun(request, p)


async def _rerun(request: ActionRequest, p: Platforms) -> StepReport:
    adf = p.need_adf()
    alert = request.alert
    group = alert.group_id or request.chain_id.split("|", 2)[-1]
    latest = await adf.latest_in_group(alert.scope, group)
    if latest is not None and latest.run_id != alert.run_id:
        # a newer run of the group exists: our own earlier delivery, or a person's rerun
        return StepReport(
            adopt_status(remedies.ADF_RUN_STATUS.get(latest.status, Status.PENDING)),
            new_run_id=latest.run_id,
            platform_status=latest.status,
            detail=f"adopted run {latest.run_id} already in group {group}",
        )
    pipeline = alert.pipeline or (await adf.get_run(alert.scope, alert.run_id)).pipeline
    new_run = await adf.rerun_from_failure(alert.scope, pipeline, alert.run_id)
    return StepReport(
        Status.STARTED,
        new_run_id=new_run,
        platform_status="Queued",
        detail=f"rerun {new_run} from failure of {alert.run_id}",
    )


async def verify_adf_run(request: ActionRequest, p: Platforms) -> StepReport:
    run = await p.need_adf().get_run(request.alert.scope, request.context["new_run_id"])
    return StepReport(
        remedies.ADF_RUN_STATUS.get(run.status, Status.PENDING),
        new_run_id=run.run_id,
        platform_status=run.status,
        detail=run.message,
    )
