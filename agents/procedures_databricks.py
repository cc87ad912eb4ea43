"""Databricks procedures: start or restart a cluster, scale it, fall back to another library
version, repair a job run, create a missing table from the estate's DDL.

Each reads the current state first (cluster state, library statuses, the run's repairs), so
a redelivered request adopts what the first delivery began instead of starting another.
"""

from __future__ import annotations

from dataclasses import replace

from agents.platforms import CannotRemediate, Platforms, adopt_status
from streams.adapters.databricks import DatabricksClient
from streams.adapters.errors import ErrorKind, PlatformError
from streams.policy import remedies
from streams.policy.model import ActionRequest, Step
from streams.policy.steps import Status, StepReport

_DRIVER_TROUBLE = {
    "DRIVER_NOT_RESPONDING",
    "DRIVER_UNAVAILABLE",
    "DRIVER_UNREACHABLE",
    "DRIVER_UNRESPONSIVE",
}


async def restart_cluster(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    dbx = p.need_databricks()
    ws, cluster_id = request.alert.scope, _cluster_id(request)
    cluster = await dbx.get_cluster(ws, cluster_id)
    if request.step == Step.VERIFY.value:
        return _cluster_report(cluster.state, cluster.state_message)
    if cluster.state in ("PENDING", "RESTARTING"):
        return StepReport(Status.STARTED, platform_status=cluster.state, detail="already starting")
    if cluster.state == "RUNNING":
        if request.alert.error_code not in _DRIVER_TROUBLE:
            return StepReport(
                Status.SUCCEEDED, platform_status="RUNNING", detail="cluster already running"
            )
        since = await _moved_since_failure(dbx, request, ("RESTARTING", "STARTING"))
        if since:  # our earlier delivery, or someone else, restarted it after the failure
            return StepReport(
                Status.SUCCEEDED, platform_status="RUNNING", detail=f"running again: {since}"
            )
        await dbx.restart_cluster(ws, cluster_id)
        return StepReport(
            Status.STARTED, platform_status="RESTARTING", detail="driver restart requested"
        )
    if cluster.state != "TERMINATED":
        raise PlatformError(
            ErrorKind.CONFLICT, f"cluster is {cluster.state}; start needs TERMINATED"
        )
    await dbx.start_cluster(ws, cluster_id)
    return StepReport(
        Status.STARTED, platform_status="PENDING", detail=f"start of {cluster_id} requested"
    )


async def scale_cluster(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    dbx = p.need_databricks()
    ws, cluster_id = request.alert.scope, _cluster_id(request)
    cluster = await dbx.get_cluster(ws, cluster_id)
    size = remedies.scaled_size(cluster.num_workers, cluster.autoscale_min, cluster.autoscale_max)
    if request.step == Step.VERIFY.value:
        report = _cluster_report(cluster.state, cluster.state_message)
        wanted = int(request.context.get("target_workers", "0"))
        if report.status is Status.SUCCEEDED and size < wanted:
            return StepReport(
                Status.PENDING, platform_status=cluster.state, detail="resize under way"
            )
        return report
    adopted = StepReport(
        Status.STARTED,
        platform_status=cluster.state,
        detail="resize already under way",
        context={"target_workers": str(size)},
    )
    if cluster.state == "RESIZING":
        return adopted
    if cluster.state != "RUNNING":
        raise PlatformError(ErrorKind.CONFLICT, f"cluster is {cluster.state}; resize needs RUNNING")
    plan = remedies.scale_plan(cluster.num_workers, cluster.autoscale_min, cluster.autoscale_max)
    if plan is None:
        raise CannotRemediate(f"cluster {cluster_id} is already at its maximum of {size} workers")
    if plan.autoscale_max is None:
        # a fixed-size cluster changes size only when asked to: a resize since the failure is
        # ours (an earlier delivery) or a person's. An autoscaling cluster resizes itself all
        # the time, so there a redelivery may raise the floor once more (never past the max).
        since = await _moved_since_failure(dbx, request, ("RESIZING",))
        if since:
            return replace(adopted, status=Status.SUCCEEDED, detail=f"already resized: {since}")
        await dbx.resize_cluster(ws, cluster_id, plan.target)
    else:
        await dbx.resize_cluster(ws, cluster_id, autoscale=(plan.target, plan.autoscale_max))
    return StepReport(
        Status.STARTED,
        platform_status="RESIZING",
        context={"target_workers": str(plan.target)},
        detail=f"resize {size} -> {plan.target} workers"
        + (f" (autoscaling up to {plan.autoscale_max})" if plan.autoscale_max else ""),
    )


async def library_fallback(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    dbx = p.need_databricks()
    ws, cluster_id = request.alert.scope, _cluster_id(request)
    name, failed_version = remedies.split_requirement(request.alert.library)
    if request.step == Step.VERIFY.value:
        cluster = await dbx.get_cluster(ws, cluster_id)
        if cluster.state != "RUNNING":  # libraries resolve once the restart is through
            return (
                _cluster_report(cluster.state, cluster.state_message)
                if cluster.state == "ERROR"
                else StepReport(
                    Status.PENDING, platform_status=cluster.state, detail="waiting for the restart"
                )
            )
        wanted = request.context["installing"]
        statuses = {s.library: s for s in await dbx.library_statuses(ws, cluster_id)}
        status = statuses.get(wanted)
        if status is None:
            return StepReport(Status.PENDING, detail=f"{wanted} not listed yet")
        tried = request.context.get("tried_versions", "")
        return StepReport(
            remedies.LIBRARY_STATUS.get(status.status, Status.PENDING),
            platform_status=status.status,
            detail="; ".join(status.messages)[:300],
            context={"tried_versions": tried},
        )
    tried = [v for v in request.alert.details.get("tried_versions", "").split(",") if v]
    version = remedies.next_library_version(
        p.estate.library_fallbacks.get(name, ()), [failed_version, *tried]
    )
    if version is None:
        raise CannotRemediate(f"no untried fallback version configured for {name}")
    spec = f"{name}=={version}"
    context = {"installing": spec, "tried_versions": ",".join([*tried, version])}
    attached = {s.library: s.status for s in await dbx.library_statuses(ws, cluster_id)}
    if attached.get(spec, "UNINSTALL_ON_RESTART") != "UNINSTALL_ON_RESTART":
        # an earlier delivery of this request installed it already: verify that install
        return StepReport(
            adopt_status(remedies.LIBRARY_STATUS.get(attached[spec], Status.PENDING)),
            platform_status=attached[spec],
            detail=f"{spec} already on the cluster",
            context=context,
        )
    # every version known to fail goes: the alerted one, and a fallback that failed since
    for stale in remedies.versions_to_remove(spec, attached):
        await dbx.uninstall_library(ws, cluster_id, stale)
    await dbx.install_library(ws, cluster_id, spec)
    cluster = await dbx.get_cluster(ws, cluster_id)
    if cluster.state == "RUNNING":  # uninstalls take effect only at the next restart
        await dbx.restart_cluster(ws, cluster_id)
    return StepReport(Status.STARTED, detail=f"{request.alert.library} -> {spec}", context=context)


async def repair_job(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    dbx = p.need_databricks()
    ws, run_id = request.alert.scope, request.alert.run_id
    if request.step == Step.VERIFY.value:
        run = await dbx.get_run(ws, request.context.get("new_run_id") or run_id)
        return StepReport(
            remedies.job_run_status(run.life_cycle_state, run.result_state),
            platform_status=f"{run.life_cycle_state}/{run.result_state}",
            detail=run.state_message,
        )
    if not run_id:
        job_id = request.alert.job_id
        token = f"pipemedic:{request.chain_id}:{request.attempt}"[-64:]
        new_run = await dbx.run_now(ws, job_id, idempotency_token=token)
        return StepReport(
            Status.STARTED, new_run_id=str(new_run), detail=f"run-now of job {job_id}"
        )
    run = await dbx.get_run(ws, run_id)
    known = request.alert.details.get("repair_id", "")
    if run.latest_repair_id is not None and str(run.latest_repair_id) != known:
        return StepReport(
            adopt_status(remedies.job_run_status(run.life_cycle_state, run.result_state)),
            new_run_id=str(run_id),
            repair_id=str(run.latest_repair_id),
            detail=f"adopted repair {run.latest_repair_id}",
        )
    repair_id = await dbx.repair_run(ws, run_id, run.latest_repair_id)
    return StepReport(
        Status.STARTED,
        new_run_id=str(run_id),
        repair_id=str(repair_id),
        detail=f"repair {repair_id} of run {run_id} (failed tasks only)",
    )


async def create_table(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    """Run the estate's DDL for the missing table on the workspace's SQL warehouse; the
    repair of the run follows once the statement succeeded (``steps.FOLLOW_UPS``). The DDL
    is ``CREATE TABLE IF NOT EXISTS`` (checked when the estate loads), so a redelivery that
    runs it again changes nothing."""
    dbx = p.need_databricks()
    ws, table = request.alert.scope, request.alert.details.get("table", "")
    if request.step == Step.VERIFY.value:
        statement = await dbx.get_statement(ws, request.context.get("statement_id", ""))
        done = f"table {table} created" if statement.state == "SUCCEEDED" else statement.error
        return StepReport(
            remedies.STATEMENT_STATE.get(statement.state, Status.PENDING),
            platform_status=statement.state,
            detail=done,
        )
    workspace = p.estate.databricks.workspaces.get(ws)
    ddl = workspace.tables.get(table) if workspace is not None else None
    if workspace is None or not ddl or not workspace.sql_warehouse_id:
        raise CannotRemediate(f"the estate holds no DDL for table {table or '(unnamed)'}")
    statement = await dbx.execute_statement(ws, workspace.sql_warehouse_id, ddl)
    return StepReport(
        Status.STARTED,
        platform_status=statement.state,
        context={"statement_id": statement.statement_id},
        detail=f"DDL of {table} on warehouse {workspace.sql_warehouse_id} "
        f"(statement {statement.statement_id})",
    )


async def _moved_since_failure(
    dbx: DatabricksClient, request: ActionRequest, event_types: tuple[str, ...]
) -> str:
    """The newest cluster event of ``event_types`` after the failure, described ("" if none).

    The failure's own time is the platform's (the same clock as the events); an alert without
    one falls back to when pipemedic first saw it.
    """
    since = request.alert.occurred_at or request.first_seen_at
    events = await dbx.cluster_events(
        request.alert.scope, _cluster_id(request), event_types, limit=1
    )
    newest = max(events, key=lambda e: e.timestamp, default=None)
    if newest is None or newest.timestamp <= since:
        return ""
    return f"{newest.type} event {newest.timestamp - since} ms after the failure"


def _cluster_id(request: ActionRequest) -> str:
    cluster_id = request.alert.cluster_id
    if not cluster_id:
        raise CannotRemediate("the alert names no cluster")
    return cluster_id


def _cluster_report(state: str, message: str) -> StepReport:
    return StepReport(
        remedies.CLUSTER_STATE.get(state, Status.PENDING), platform_status=state, detail=message
    )
