"""One procedure per action: the platform calls that carry a remediation step out
(ADF in :mod:`agents.procedures_adf`, Databricks in :mod:`agents.procedures_databricks`), or the
action's configured playbook, or paging people.

Each takes the :class:`ActionRequest` and the platform clients and returns a
:class:`StepReport`, or raises :class:`PlatformError`. The decisions inside (which state reads
how, how far to scale, which version next) are in :mod:`streams.policy.remedies`. Every
procedure checks current state before acting, so a redelivered request adopts the run, repair,
restart, resize or library install the first delivery began instead of starting another. Two
copies arriving together cannot both act: the executors run one record per key (chain) at a
time (:func:`agents.common.run_concurrently`).
"""

from __future__ import annotations

from agents.platforms import Platforms, Procedure
from agents.procedures_adf import retry_pipeline, upstream_check, verify_adf_run
from agents.procedures_databricks import (
    create_table,
    library_fallback,
    repair_job,
    restart_cluster,
    scale_cluster,
)
from streams.estate import Estate
from streams.policy.model import Action, ActionRequest, Step
from streams.policy.steps import Status, StepReport


async def page_people(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    """The manual action: call the configured playbook (paging, ticket) if there is one."""
    if p.playbooks is not None and Action.MANUAL.value in p.estate.playbooks.urls:
        await p.playbooks.call(Action.MANUAL.value, playbook_payload(request))
        return StepReport(Status.SUCCEEDED, detail="manual playbook called")
    return StepReport(
        Status.SUCCEEDED, detail="recorded for people (no manual playbook configured)"
    )


async def via_playbook(request: ActionRequest, p: Platforms, now_ms: int) -> StepReport:
    """Any action may be delegated to a configured webhook instead of the platform API.

    The call is an action of ours like any other (an ``executed`` row, so the chain counts as
    remediated, not self-healed). A rerun it names is verified on ADF; otherwise there is
    nothing pipemedic can check, and the playbook's acceptance closes the chain.
    """
    if request.step == Step.VERIFY.value:
        if request.alert.source == "adf" and request.context.get("new_run_id"):
            return await verify_adf_run(request, p)
        return StepReport(Status.SUCCEEDED, detail="handed over to the playbook")
    answer = await p.playbooks.call(request.action, playbook_payload(request))
    new_run = str(answer.get("new_run_id") or answer.get("run_id") or "")
    if new_run and request.alert.source == "adf" and p.adf is not None:
        return StepReport(Status.STARTED, new_run_id=new_run, detail="playbook started a rerun")
    return StepReport(Status.STARTED, detail=f"playbook answered {sorted(answer)}")


def playbook_payload(request: ActionRequest) -> dict:
    alert = request.alert
    return {
        "ticket_id": request.chain_id,
        "error_type": request.classification.error_type,
        "metadata": {
            "source": alert.source,
            "scope": alert.scope,
            "run_id": alert.run_id,
            "pipeline": alert.pipeline,
            "cluster_id": alert.cluster_id,
            "error_code": alert.error_code,
            "message": alert.message[:500],
        },
        "retry_attempt": request.attempt,
        "max_retries": request.max_attempts,
    }


PROCEDURES: dict[str, Procedure] = {
    Action.RETRY_PIPELINE.value: retry_pipeline,
    Action.UPSTREAM_CHECK.value: upstream_check,
    Action.RESTART_CLUSTER.value: restart_cluster,
    Action.SCALE_CLUSTER.value: scale_cluster,
    Action.LIBRARY_FALLBACK.value: library_fallback,
    Action.REPAIR_JOB.value: repair_job,
    Action.CREATE_TABLE.value: create_table,
    Action.MANUAL.value: page_people,
}


def procedure_for(action: str, estate: Estate) -> Procedure:
    if action != Action.MANUAL.value and action in estate.playbooks.urls:
        return via_playbook
    return PROCEDURES[action]
