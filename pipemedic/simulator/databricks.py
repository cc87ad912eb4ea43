"""Simulated Databricks workspaces: routing, authentication and the REST paths
databricks-sdk 0.162 calls.

Each workspace lives under its own host prefix, ``{url}/databricks/{workspace_id}``, because
the SDK appends API paths to whatever host it is given. Requests must carry the workspace's
PAT (none: 401 UNAUTHENTICATED; wrong: 403 PERMISSION_DENIED "Invalid access token", as
Databricks answers) and, when the SDK sends ``X-Databricks-Workspace-Id``, the right id. The
host-metadata probe the SDK makes while building a client (``/.well-known/databricks-config``)
is answered without a token, like the real endpoint. Behaviour lives in
:mod:`~pipemedic.simulator.clusters` and :mod:`~pipemedic.simulator.jobs`; the table at the end
maps each (method, path) to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from pipemedic.simulator.clusters import ClustersSim
from pipemedic.simulator.jobs import JobsSim
from pipemedic.simulator.protocol import BODY, SimError
from pipemedic.simulator.world import WorkspaceSpec, World


class Workspace:
    def __init__(self, spec: WorkspaceSpec, clock: Callable[[], float]) -> None:
        self.spec = spec
        self.clusters = ClustersSim(spec, clock)
        self.jobs = JobsSim(spec, clock)


class DatabricksSim:
    def __init__(self, world: World, clock: Callable[[], float]) -> None:
        self._world = world
        self._clock = clock
        self.workspaces: dict[str, Workspace] = {}
        self.reset()

    def reset(self) -> None:
        self.workspaces = {
            w.workspace_id: Workspace(w, self._clock) for w in self._world.workspaces
        }

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/databricks/{ws}/{tail:.*}", self._dispatch)]

    async def _dispatch(self, request: web.Request) -> web.Response:
        workspace = self.workspaces.get(request.match_info["ws"])
        if workspace is None:
            raise SimError(404, f"Workspace {request.match_info['ws']} does not exist", "NOT_FOUND")
        tail = "/" + request.match_info["tail"]
        if tail == "/.well-known/databricks-config":
            return web.json_response(
                {"workspace_id": workspace.spec.workspace_id, "cloud": "azure", "oidc_endpoint": ""}
            )
        self._authenticate(workspace, request)
        target = _OPERATIONS.get((request.method, tail))
        if target is None:
            raise SimError(404, f"No API found for '{request.method} {tail}'", "ENDPOINT_NOT_FOUND")
        if request.method == "GET":
            params: Any = dict(request.query)
        else:
            params = request[BODY] if request[BODY] is not None else {}
            if not isinstance(params, Mapping):
                raise SimError(
                    400, "Malformed request: the body must be a JSON object", "MALFORMED_REQUEST"
                )
        part, name = target
        return web.json_response(getattr(getattr(workspace, part), name)(params))

    @staticmethod
    def _authenticate(workspace: Workspace, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise SimError(
                401,
                "Credential was not sent or was of an unsupported type for this API.",
                "UNAUTHENTICATED",
            )
        if token != workspace.spec.token:
            raise SimError(403, "Invalid access token.", "PERMISSION_DENIED")
        sent_id = request.headers.get("X-Databricks-Workspace-Id")
        if sent_id is not None and sent_id != workspace.spec.workspace_id:
            raise SimError(
                400,
                f"X-Databricks-Workspace-Id {sent_id} does not match this workspace.",
                "INVALID_PARAMETER_VALUE",
            )


# (method, API versions, path) -> (part of the workspace, its method). The versions are the
# ones Databricks serves; databricks-sdk 0.162 uses 2.1 clusters, 2.0 libraries, 2.2 jobs.
_API: tuple[tuple[str, tuple[str, ...], str, str, str], ...] = (
    ("GET", ("2.0", "2.1"), "clusters/get", "clusters", "get_cluster"),
    ("POST", ("2.0", "2.1"), "clusters/start", "clusters", "start"),
    ("POST", ("2.0", "2.1"), "clusters/restart", "clusters", "restart"),
    ("POST", ("2.0", "2.1"), "clusters/resize", "clusters", "resize"),
    ("POST", ("2.0", "2.1"), "clusters/edit", "clusters", "edit"),
    ("POST", ("2.0", "2.1"), "clusters/events", "clusters", "events"),
    ("POST", ("2.0",), "libraries/install", "clusters", "install"),
    ("POST", ("2.0",), "libraries/uninstall", "clusters", "uninstall"),
    ("GET", ("2.0",), "libraries/cluster-status", "clusters", "library_statuses"),
    ("GET", ("2.1", "2.2"), "jobs/runs/get", "jobs", "get_run"),
    ("POST", ("2.1", "2.2"), "jobs/runs/repair", "jobs", "repair"),
    ("POST", ("2.1", "2.2"), "jobs/run-now", "jobs", "run_now"),
)

_OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    (method, f"/api/{version}/{path}"): (part, name)
    for method, versions, path, part, name in _API
    for version in versions
}
