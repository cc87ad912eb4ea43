"""A simulator world made from recorded alerts, for ``pipemedic whatif`` without ``--world``.

Everything the alerts name exists: each ADF factory with its pipelines and the failed runs,
each Databricks workspace with its clusters, jobs, job runs and libraries. Every remediation
fails once and then succeeds: an ADF pipeline's first rerun fails and the next succeeds, a job
run's first repair fails and the next succeeds, a failing library's first fallback installs.
A policy that gives up after one attempt therefore looks different from one that retries,
which is what a comparison is for. The subscription and resource group come from the ARM ids
in the payloads when they are there (any value works: the estate points at the simulator).

What an alert does not say, the world cannot know: a Databricks job webhook or an Azure metric
alert names no error, so the run it derives failed without a message, and enrichment then
classifies it as rules do an unexplained failure (mostly: to people). Give ``--world`` where
that matters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from streams.policy.model import Alert, Kind, Source
from streams.policy.normalize import NormalizeError, normalize

_ARM = re.compile(
    r"/subscriptions/([0-9a-fA-F-]{36})/resourcegroups/([^/\"]+)/providers/"
    r"microsoft\.datafactory/factories/([^/\"]+)",
    re.IGNORECASE,
)
NO_SUBSCRIPTION = "00000000-0000-4000-8000-000000000000"
TOKEN = "whatif-token"
STOPPED = ("DRIVER_UNREACHABLE", "CLOUD_PROVIDER_LAUNCH_FAILURE", "UNEXPECTED_LAUNCH_FAILURE")


def derive_world(lines: Iterable[bytes]) -> dict[str, Any]:
    alerts: list[Alert] = []
    arm: dict[str, tuple[str, str]] = {}
    for line in lines:
        for subscription, group, factory in _ARM.findall(line.decode("utf-8", "replace")):
            arm.setdefault(factory.lower(), (subscription, group))
        try:
            alerts += normalize(line, received_at_ms=0)
        except NormalizeError:
            continue  # a dead letter in the pipeline too
    factories: dict[str, dict[str, Any]] = {}
    workspaces: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        if alert.source == Source.ADF.value and alert.scope:
            _adf(factories, arm, alert)
        elif alert.source == Source.DATABRICKS.value and alert.scope:
            _databricks(workspaces, alert)
    return {
        "latency_ms": 5,
        "factories": [_factory_doc(f) for f in factories.values()],
        "workspaces": [_workspace_doc(w) for w in workspaces.values()],
    }


def _adf(factories: dict[str, Any], arm: dict[str, tuple[str, str]], alert: Alert) -> None:
    subscription, group = arm.get(alert.scope.lower(), (NO_SUBSCRIPTION, ""))
    factory = factories.setdefault(
        alert.scope,
        {
            "name": alert.scope,
            "subscription": subscription,
            "resource_group": group or alert.details.get("resource_group") or "rg-whatif",
            "pipelines": {},
            "runs": {},
        },
    )
    pipeline = alert.pipeline or "unnamed"
    factory["pipelines"].setdefault(
        pipeline,
        {
            "name": pipeline,
            "reruns": ["Failed", "Succeeded"],
            "failure_message": alert.message or "derived failure",
        },
    )
    run_id = alert.run_id or f"{_guid_like(pipeline)}"
    factory["runs"].setdefault(
        run_id,
        {
            "run_id": run_id,
            "pipeline": pipeline,
            "status": "Failed",
            "message": alert.message or "derived failure",
            "run_group_id": alert.group_id or run_id,
            "age_s": 60,
        },
    )


def _databricks(workspaces: dict[str, Any], alert: Alert) -> None:
    workspace = workspaces.setdefault(
        alert.scope,
        {"workspace_id": alert.scope, "clusters": {}, "jobs": {}, "runs": {}, "failing": []},
    )
    if alert.cluster_id:
        cluster = workspace["clusters"].setdefault(
            alert.cluster_id,
            {"cluster_id": alert.cluster_id, "state": "RUNNING", "num_workers": 2},
        )
        if alert.kind == Kind.CLUSTER.value and alert.error_code in STOPPED:
            cluster.update(state="TERMINATED", termination_code=alert.error_code)
        if alert.library:
            cluster.setdefault("libraries", []).append(alert.library)
            workspace["failing"].append(alert.library)
    if alert.kind in (Kind.JOB_RUN.value, Kind.TASK_RUN.value) and alert.run_id.isdigit():
        job_id = int(alert.job_id) if alert.job_id.isdigit() else 9_000_000 + len(workspace["jobs"])
        task = alert.sub_id or "main"
        job = workspace["jobs"].setdefault(
            job_id, {"job_id": job_id, "name": alert.pipeline or f"job-{job_id}", "tasks": {}}
        )
        job["tasks"].setdefault(task, {"task_key": task})
        workspace["runs"].setdefault(
            int(alert.run_id),
            {
                "run_id": int(alert.run_id),
                "job_id": job_id,
                "life_cycle_state": "TERMINATED",
                "result_state": "FAILED",
                "state_message": alert.message or "derived failure",
                "repairs": ["FAILED", "SUCCESS"],
                "age_s": 60,
            },
        )


def _factory_doc(factory: dict[str, Any]) -> dict[str, Any]:
    return {
        **factory,
        "pipelines": list(factory["pipelines"].values()),
        "runs": list(factory["runs"].values()),
    }


def _workspace_doc(workspace: dict[str, Any]) -> dict[str, Any]:
    jobs = [{**j, "tasks": list(j["tasks"].values())} for j in workspace["jobs"].values()]
    doc = {
        "workspace_id": workspace["workspace_id"],
        "token": TOKEN,
        "clusters": list(workspace["clusters"].values()),
        "jobs": jobs,
        "runs": list(workspace["runs"].values()),
    }
    if workspace["failing"]:
        doc["failing_libraries"] = sorted(set(workspace["failing"]))
    return doc


def _guid_like(name: str) -> str:
    import hashlib

    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
