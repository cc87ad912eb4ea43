"""Simulated Databricks workspaces: routing, authentication and the REST paths
databricks-sdk calls.

Each workspace lives under its own host prefix, ``{url}/databricks/{workspace_id}``, because
the SDK appends API paths to whatever host it is given. Answered without a token, like the
real endpoints: the host metadata the SDK reads while building a client
(``/.well-known/databricks-config``: the workspace id, ``cloud: AZURE`` and the OIDC root),
the OIDC discovery document, and the OAuth token endpoint, where a service principal of the
world trades its id and secret (HTTP Basic, ``grant_type=client_credentials``, scope
``all-apis``) for a bearer token (a wrong secret: 401 ``invalid_client``, OAuth-style).

API requests must carry a token the workspace accepts: its PAT, a token issued by its own
``/oidc/v1/token`` and not expired, or an Entra ID token the Azure AD simulator issued for
Azure Databricks' application id. None: 401 UNAUTHENTICATED; anything else: 403
PERMISSION_DENIED "Invalid access token", as Databricks answers. When the SDK sends
``X-Databricks-Workspace-Id``, it must name the workspace. Behaviour lives in
:mod:`~pipemedic.simulator.clusters`, :mod:`~pipemedic.simulator.jobs` and
:mod:`~pipemedic.simulator.warehouses`; the table at the end maps each (method, path) to it
(and ``GET .../sql/statements/{id}``, the one path with an id in it, to the warehouses).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pipemedic.simulator.clusters import ClustersSim
from pipemedic.simulator.jobs import JobsSim
from pipemedic.simulator.protocol import BODY, SimError
from pipemedic.simulator.warehouses import WarehousesSim
from pipemedic.simulator.world import WorkspaceSpec, World

if TYPE_CHECKING:
    from pipemedic.simulator.aad import AzureADSim

# Azure Databricks' application id: the audience of Entra ID tokens for a workspace.
ENTRA_AUDIENCE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"


class Workspace:
    def __init__(self, spec: WorkspaceSpec, clock: Callable[[], float]) -> None:
        self.spec = spec
        self.clusters = ClustersSim(spec, clock)
        self.jobs = JobsSim(spec, clock)
        self.warehouses = WarehousesSim(spec)
        self.principals = {sp.client_id: sp for sp in spec.service_principals}
        self.oauth_tokens: dict[str, float] = {}  # issued by /oidc/v1/token -> expires at


class DatabricksSim:
    def __init__(
        self, world: World, clock: Callable[[], float], azure_ad: AzureADSim | None = None
    ) -> None:
        self._world = world
        self._clock = clock
        self._azure_ad = azure_ad  # whose Entra ID tokens the workspaces accept
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
        host = f"{request.scheme}://{request.host}/databricks/{workspace.spec.workspace_id}"
        if (request.method, tail) == ("GET", "/.well-known/databricks-config"):
            return web.json_response(
                {
                    "oidc_endpoint": f"{host}/oidc",
                    "workspace_id": workspace.spec.workspace_id,
                    "cloud": "AZURE",
                }
            )
        if (request.method, tail) == ("GET", "/oidc/.well-known/oauth-authorization-server"):
            return web.json_response(
                {
                    "issuer": f"{host}/oidc",
                    "authorization_endpoint": f"{host}/oidc/v1/authorize",
                    "token_endpoint": f"{host}/oidc/v1/token",
                    "grant_types_supported": ["client_credentials"],
                }
            )
        if (request.method, tail) == ("POST", "/oidc/v1/token"):
            return self._issue(workspace, request)
        self._authenticate(workspace, request)
        target = _OPERATIONS.get((request.method, tail))
        if request.method == "GET" and tail.startswith(_STATEMENT):
            return web.json_response(workspace.warehouses.get(tail.removeprefix(_STATEMENT)))
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

    def _issue(self, workspace: Workspace, request: web.Request) -> web.Response:
        """OAuth M2M: client credentials (HTTP Basic, or in the form) for a bearer token."""
        form = request[BODY] if isinstance(request[BODY], Mapping) else {}
        client_id, secret = _basic_credentials(request.headers.get("Authorization", ""))
        client_id = client_id or form.get("client_id", "")
        secret = secret or form.get("client_secret", "")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Only client_credentials.")
        principal = workspace.principals.get(client_id)
        if principal is None or not secrets.compare_digest(principal.client_secret, secret):
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        if "all-apis" not in str(form.get("scope", "")).split():
            return _oauth_error(400, "invalid_scope", "The requested scope is not allowed.")
        token = "dbx-oauth-" + secrets.token_urlsafe(24)
        workspace.oauth_tokens[token] = self._clock() + principal.expires_in_s
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": principal.expires_in_s,
                "scope": "all-apis",
            }
        )

    def _accepts(self, workspace: Workspace, token: str) -> bool:
        if secrets.compare_digest(token, workspace.spec.token):
            return True
        expires_at = workspace.oauth_tokens.get(token)
        if expires_at is not None:
            return self._clock() < expires_at
        return self._azure_ad is not None and self._azure_ad.accepts(token, ENTRA_AUDIENCE)

    def _authenticate(self, workspace: Workspace, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise SimError(
                401,
                "Credential was not sent or was of an unsupported type for this API.",
                "UNAUTHENTICATED",
            )
        if not self._accepts(workspace, token):
            raise SimError(403, "Invalid access token.", "PERMISSION_DENIED")
        sent_id = request.headers.get("X-Databricks-Workspace-Id")
        if sent_id is not None and sent_id != workspace.spec.workspace_id:
            raise SimError(
                400,
                f"X-Databricks-Workspace-Id {sent_id} does not match this workspace.",
                "INVALID_PARAMETER_VALUE",
            )


def _basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        pair = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, _, secret = pair.partition(":")
    return client_id, secret


def _oauth_error(status: int, code: str, description: str) -> web.Response:
    """Token endpoint errors are OAuth-shaped (RFC 6749 section 5.2), not Databricks API ones."""
    return web.json_response({"error": code, "error_description": description}, status=status)


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
    ("GET", ("2.0", "2.1", "2.2"), "jobs/runs/get-output", "jobs", "get_output"),
    ("POST", ("2.0",), "sql/statements", "warehouses", "execute"),
)
_STATEMENT = "/api/2.0/sql/statements/"

_OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    (method, f"/api/{version}/{path}"): (part, name)
    for method, versions, path, part, name in _API
    for version in versions
}
