"""Simulated Databricks clusters and their libraries, for one workspace.

Decides how clusters move, counted in ``clusters/get`` polls: ``start`` takes a TERMINATED
cluster through PENDING (``polls_to_start`` GETs) to RUNNING and is a no-op for a cluster
that is already up (as documented); ``restart`` and ``resize`` need RUNNING (else 400
INVALID_STATE) and pass through RESTARTING / RESIZING. Libraries resolve when their cluster
runs: INSTALLED, or FAILED with a pip-style message for the workspace's
``failing_libraries``; ``uninstall`` marks UNINSTALL_ON_RESTART until the next start or
restart. Every move is also a cluster event. Unknown clusters answer 400
INVALID_PARAMETER_VALUE "Cluster ... does not exist", as Databricks does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipemedic.simulator.protocol import SimError
from pipemedic.simulator.world import ClusterSpec, WorkspaceSpec

_TRANSITIONAL = ("PENDING", "RESTARTING", "RESIZING")


@dataclass
class ClusterState:
    spec: ClusterSpec
    state: str
    num_workers: int
    autoscale: dict[str, int] | None
    termination: dict[str, str] | None
    state_message: str
    polls_left: int = 0
    libraries: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {library, status}
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        cluster: dict[str, Any] = {
            "cluster_id": self.spec.cluster_id,
            "cluster_name": self.spec.cluster_id,
            "spark_version": "15.4.x-scala2.12",
            "node_type_id": "Standard_DS3_v2",
            "state": self.state,
            "state_message": self.state_message,
        }
        if self.autoscale:
            cluster["autoscale"] = dict(self.autoscale)
        else:
            cluster["num_workers"] = self.num_workers
        if self.termination and self.state in ("TERMINATING", "TERMINATED", "ERROR"):
            cluster["termination_reason"] = dict(self.termination)
        return cluster


class ClustersSim:
    """The clusters of one workspace and their libraries."""

    def __init__(self, spec: WorkspaceSpec, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.failing = set(spec.failing_libraries)
        self.clusters: dict[str, ClusterState] = {}
        for c in spec.clusters:
            scale = c.autoscale
            cluster = ClusterState(
                spec=c,
                state=c.state,
                num_workers=c.num_workers,
                autoscale={"min_workers": scale.min_workers, "max_workers": scale.max_workers}
                if scale
                else None,
                termination={"code": c.termination_code, "type": c.termination_type}
                if c.termination_code
                else None,
                state_message=c.state_message,
            )
            for package in c.libraries:
                cluster.libraries[package] = {
                    "library": {"pypi": {"package": package}},
                    "status": "PENDING",
                }
            for event in c.events:
                details = (
                    {"reason": {"code": event.reason_code, "type": event.reason_type}}
                    if event.reason_code
                    else {}
                )
                self._event(cluster, event.type, details, at=clock() - event.age_s)
            self.clusters[c.cluster_id] = cluster
            if cluster.state == "RUNNING":
                self._resolve_libraries(cluster)

    def get_cluster(self, params: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(params)
        if cluster.state in _TRANSITIONAL:
            if cluster.polls_left > 0:
                cluster.polls_left -= 1
            else:
                self._running(cluster)
        return cluster.as_json()

    def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(body)
        if cluster.state == "TERMINATING":
            raise SimError(
                400,
                f"Cluster {cluster.spec.cluster_id} is in unexpected state Terminating.",
                "INVALID_STATE",
            )
        if cluster.state in ("TERMINATED", "ERROR"):
            self._drop_uninstalled(cluster)
            cluster.termination = None
            self._move(cluster, "PENDING", "STARTING", "Starting Spark")
        return {}

    def restart(self, body: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._running_only(body, "restart")
        self._drop_uninstalled(cluster)
        self._move(cluster, "RESTARTING", "RESTARTING", "Restarting Spark")
        return {}

    def resize(self, body: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._running_only(body, "resize")
        self._resize(cluster, body)
        self._move(cluster, "RESIZING", "RESIZING", "Resizing cluster")
        return {}

    def edit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(body)
        if not body.get("spark_version"):
            raise SimError(400, "Missing required field: spark_version")
        self._resize(cluster, body)
        self._event(cluster, "EDITED", {})
        if cluster.state == "RUNNING":
            self._move(
                cluster, "RESTARTING", "RESTARTING", "Restarting to apply the new configuration"
            )
        return {}

    def events(self, body: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(body)
        wanted = set(body.get("event_types") or ())
        events = [e for e in cluster.events if not wanted or e["type"] in wanted]
        events.sort(key=lambda e: e["timestamp"], reverse=body.get("order", "DESC") == "DESC")
        limit = min(int(body.get("limit") or body.get("page_size") or 50), 500)
        offset = int(body.get("offset") or 0)
        page: dict[str, Any] = {
            "events": events[offset : offset + limit],
            "total_count": len(events),
        }
        if offset + limit < len(events):
            page["next_page"] = {**body, "offset": offset + limit, "limit": limit}
        return page

    # --- libraries --------------------------------------------------------------------

    def install(self, body: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(body)
        for library in _libraries(body):
            cluster.libraries[_library_key(library)] = {"library": library, "status": "PENDING"}
        if cluster.state == "RUNNING":
            self._resolve_libraries(cluster)
        return {}

    def uninstall(self, body: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(body)
        for library in _libraries(body):
            entry = cluster.libraries.get(_library_key(library))
            if entry is not None:
                entry["status"], entry["messages"] = "UNINSTALL_ON_RESTART", []
        return {}

    def library_statuses(self, params: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(params)
        statuses = [
            {"is_library_for_all_clusters": False, "messages": [], **entry}
            for entry in cluster.libraries.values()
        ]
        return {"cluster_id": cluster.spec.cluster_id, "library_statuses": statuses}

    # --- state moves ------------------------------------------------------------------

    def _cluster(self, params: Mapping[str, Any]) -> ClusterState:
        cluster_id = params.get("cluster_id")
        if not cluster_id:
            raise SimError(400, "Missing required field: cluster_id")
        cluster = self.clusters.get(str(cluster_id))
        if cluster is None:
            raise SimError(400, f"Cluster {cluster_id} does not exist")
        return cluster

    def _running_only(self, body: Mapping[str, Any], operation: str) -> ClusterState:
        cluster = self._cluster(body)
        if cluster.state != "RUNNING":
            raise SimError(
                400,
                f"Cluster {cluster.spec.cluster_id} is in unexpected state {cluster.state.title()}; "
                f"{operation} needs RUNNING.",
                "INVALID_STATE",
            )
        return cluster

    def _resize(self, cluster: ClusterState, body: Mapping[str, Any]) -> None:
        workers, scale = body.get("num_workers"), body.get("autoscale")
        if (workers is None) == (scale is None):
            raise SimError(400, "Exactly one of num_workers or autoscale is required.")
        if scale is not None:
            low, high = scale.get("min_workers"), scale.get("max_workers")
            if not isinstance(low, int) or not isinstance(high, int) or not 0 <= low <= high:
                raise SimError(400, f"Invalid autoscale bounds {scale}.")
            cluster.autoscale = {"min_workers": low, "max_workers": high}
        else:
            if not isinstance(workers, int) or workers < 0:
                raise SimError(400, f"num_workers must be a non-negative integer, got {workers!r}.")
            cluster.autoscale, cluster.num_workers = None, workers

    def _move(self, cluster: ClusterState, state: str, event: str, message: str) -> None:
        cluster.state, cluster.state_message = state, message
        cluster.polls_left = cluster.spec.polls_to_start
        self._event(cluster, event, {})
        if cluster.polls_left <= 0:
            self._running(cluster)

    def _running(self, cluster: ClusterState) -> None:
        cluster.state, cluster.state_message, cluster.polls_left = "RUNNING", "", 0
        self._event(cluster, "RUNNING", {"current_num_workers": cluster.num_workers})
        self._resolve_libraries(cluster)

    def _drop_uninstalled(self, cluster: ClusterState) -> None:
        for key in [
            k for k, e in cluster.libraries.items() if e["status"] == "UNINSTALL_ON_RESTART"
        ]:
            del cluster.libraries[key]

    def _resolve_libraries(self, cluster: ClusterState) -> None:
        for key, entry in cluster.libraries.items():
            if entry["status"] not in ("PENDING", "INSTALLING"):
                continue
            if key in self.failing:
                entry["status"] = "FAILED"
                entry["messages"] = [
                    "Library installation failed for library due to user error. Error messages:\n"
                    f"ERROR: Could not find a version that satisfies the requirement {key}"
                ]
            else:
                entry["status"], entry["messages"] = "INSTALLED", []

    def _event(
        self, cluster: ClusterState, kind: str, details: dict, at: float | None = None
    ) -> None:
        timestamp = int((self._clock() if at is None else at) * 1000)
        cluster.events.append(
            {
                "cluster_id": cluster.spec.cluster_id,
                "timestamp": timestamp,
                "type": kind,
                "details": details,
            }
        )


def _libraries(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    libraries = body.get("libraries")
    if (
        not isinstance(libraries, list)
        or not libraries
        or not all(isinstance(x, dict) and x for x in libraries)
    ):
        raise SimError(400, "libraries must be a non-empty list of library specifications.")
    return libraries


def _library_key(library: Mapping[str, Any]) -> str:
    if "pypi" in library:
        package = (library["pypi"] or {}).get("package")
        if not package:
            raise SimError(400, "pypi libraries need a package.")
        return str(package)
    kind, value = next(iter(library.items()))
    return f"{kind}:{value}"
