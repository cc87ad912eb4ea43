"""The decisions inside each remediation, apart from the calls that carry them out.

How a platform state reads as a step status, how far to scale a cluster, which library
version to try next and which to remove, which pipelines a pipeline waits on. Tables where a
table will do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streams.policy.steps import Status

# ADF pipeline run status -> step status while verifying a rerun
ADF_RUN_STATUS: Mapping[str, Status] = {
    "Queued": Status.PENDING,
    "InProgress": Status.PENDING,
    "Canceling": Status.PENDING,
    "Succeeded": Status.SUCCEEDED,
    "Failed": Status.FAILED,
    "Cancelled": Status.FAILED,
}

# Databricks cluster state -> step status while verifying a (re)start or resize
CLUSTER_STATE: Mapping[str, Status] = {
    "PENDING": Status.PENDING,
    "RESTARTING": Status.PENDING,
    "RESIZING": Status.PENDING,
    "RUNNING": Status.SUCCEEDED,
    "TERMINATING": Status.FAILED,
    "TERMINATED": Status.FAILED,
    "ERROR": Status.FAILED,
    "UNKNOWN": Status.PENDING,
}

# SQL statement state -> step status while verifying a table's DDL
STATEMENT_STATE: Mapping[str, Status] = {
    "PENDING": Status.PENDING,
    "RUNNING": Status.PENDING,
    "SUCCEEDED": Status.SUCCEEDED,
    "CLOSED": Status.SUCCEEDED,  # succeeded, and its result already released
    "FAILED": Status.FAILED,
    "CANCELED": Status.FAILED,
}

# Databricks job run life cycle (+ result) -> step status while verifying a repair / run
_RUN_PENDING = {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY"}


def job_run_status(life_cycle_state: str, result_state: str) -> Status:
    if life_cycle_state in _RUN_PENDING:
        return Status.PENDING
    if result_state in ("SUCCESS", "SUCCESS_WITH_FAILURES"):
        return Status.SUCCEEDED
    return Status.FAILED


# Library install status -> step status while verifying a fallback install
LIBRARY_STATUS: Mapping[str, Status] = {
    "PENDING": Status.PENDING,
    "RESOLVING": Status.PENDING,
    "INSTALLING": Status.PENDING,
    "INSTALLED": Status.SUCCEEDED,
    "FAILED": Status.FAILED,
    "SKIPPED": Status.FAILED,
    "UNINSTALL_ON_RESTART": Status.PENDING,
    "RESTORED": Status.SUCCEEDED,
}


def scale_target(current_workers: int, autoscale_max: int | None) -> int | None:
    """Workers after scaling up by 50% (at least one more), capped at the autoscale max.

    None when the cluster is already as large as it may get.
    """
    cap = autoscale_max if autoscale_max else max(current_workers * 2, 1)
    return _grown(current_workers, cap)


def _grown(current: int, cap: int) -> int | None:
    target = min(max(current + 1, (current * 3 + 1) // 2), cap)
    return target if target > current else None


@dataclass(frozen=True)
class ScalePlan:
    """A resize: ``target`` workers, or for an autoscaling cluster a floor of ``target`` under
    an unchanged ``autoscale_max``."""

    target: int
    autoscale_max: int | None = None


def scale_plan(
    num_workers: int, autoscale_min: int | None, autoscale_max: int | None
) -> ScalePlan | None:
    """How to scale a cluster up; None when it may not grow any further.

    A fixed-size cluster grows by 50% (see :func:`scale_target`). An autoscaling cluster
    reports no current size, only its range: it keeps autoscaling, with its floor raised the
    same way and kept below its maximum (Databricks requires ``max_workers > min_workers``).
    Resizing it to a fixed ``num_workers`` would end its autoscaling, and could shrink it.
    """
    if autoscale_max is None:
        target = scale_target(num_workers, None)
        return ScalePlan(target) if target is not None else None
    target = _grown(autoscale_min or 0, autoscale_max - 1)
    return ScalePlan(target, autoscale_max) if target is not None else None


def scaled_size(num_workers: int, autoscale_min: int | None, autoscale_max: int | None) -> int:
    """The size a :class:`ScalePlan` target is compared with: the floor of an autoscaling
    cluster, else its worker count."""
    return (autoscale_min or 0) if autoscale_max is not None else num_workers


_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(?:==\s*([^\s,;]+))?\s*$")


def split_requirement(spec: str) -> tuple[str, str]:
    """``"pandas==2.2.0"`` -> ``("pandas", "2.2.0")``; a bare name has no version."""
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(f"not a pinned PyPI requirement: {spec!r}")
    return match.group(1).lower(), match.group(2) or ""


def next_library_version(fallbacks: Sequence[str], failed: Sequence[str]) -> str | None:
    """The first configured fallback version not yet known to fail."""
    for version in fallbacks:
        if version not in failed:
            return version
    return None


def versions_to_remove(installing: str, attached: Mapping[str, str]) -> tuple[str, ...]:
    """The other versions of ``installing``'s package attached to the cluster (spec ->
    install status), which the fallback must uninstall: the one that failed first and any
    fallback that failed since. Those already marked UNINSTALL_ON_RESTART are gone at the
    restart anyway."""
    package, _ = split_requirement(installing)
    return tuple(
        sorted(
            spec
            for spec, status in attached.items()
            if spec != installing and status != "UNINSTALL_ON_RESTART" and _package(spec) == package
        )
    )


def _package(spec: str) -> str:
    try:
        return split_requirement(spec)[0]
    except ValueError:  # a jar, wheel path or maven coordinate: never a PyPI version of ours
        return ""


# The seed's naming-convention heuristic, only used when enabled in configuration.
NAMING_CONVENTION = (
    ("Step2", "Step1"),
    ("Step3", "Step2"),
    ("Copy", "Load"),
    ("Transform", "Extract"),
)


def upstream_pipelines(
    pipeline: str,
    dependencies: Mapping[str, Sequence[str]],
    *,
    use_naming_convention: bool = False,
) -> tuple[str, ...]:
    """The pipelines ``pipeline`` waits on: the configured map first, the heuristic if opted in."""
    if pipeline in dependencies:
        return tuple(dependencies[pipeline])
    if use_naming_convention:
        for pattern, upstream in NAMING_CONVENTION:
            if pattern in pipeline:
                return (pipeline.replace(pattern, upstream),)
    return ()


def upstream_ready(latest_status: Mapping[str, str]) -> tuple[bool, str]:
    """Ready when every upstream pipeline's latest run succeeded; else say who is not."""
    waiting = sorted(name for name, status in latest_status.items() if status != "Succeeded")
    if not waiting:
        return True, "upstream succeeded"
    detail = ", ".join(f"{name}={latest_status[name] or 'no run'}" for name in waiting)
    return False, f"waiting on upstream: {detail}"


def latest_repair_id(run: Mapping[str, object]) -> str:
    """The id of the newest repair in a ``jobs/runs/get`` answer ("" when never repaired).

    A failure after a repair is a new failure of the same job run: the repair id tells them apart.
    """
    history = run.get("repair_history") or ()
    repairs = [
        h for h in history if isinstance(h, Mapping) and h.get("type") == "REPAIR" and h.get("id")
    ]
    return str(repairs[-1]["id"]) if repairs else ""
