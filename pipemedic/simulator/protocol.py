"""How each simulated platform phrases an error, so clients parse them like the real thing.

Handlers and error modes raise one :class:`SimError` (status, code, message); the platform a
request was addressed to - told apart by its path - decides the body: ARM wraps
``{"error": {"code", "message"}}``, Azure AD answers OAuth-style ``{"error",
"error_description"}``, Databricks ``{"error_code", "message"}`` (which databricks-sdk maps to
its exception classes). Throttling answers carry ``Retry-After`` in whole seconds, the only
form databricks-sdk parses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

ARM, AAD, DATABRICKS, SIMULATOR = "arm", "aad", "databricks", "simulator"

# Where the server leaves the parsed request body for handlers (JSON, form fields or None).
# aiohttp >= 3.13 wants typed request keys; older versions take a plain string.
BODY: Any = getattr(web, "RequestKey", lambda name, _type: name)("pipemedic_body", object)

# Default error codes when a handler or error mode names none.
_CODES: Mapping[str, Mapping[int, str]] = {
    ARM: {
        400: "BadRequest",
        401: "AuthenticationFailed",
        403: "AuthorizationFailed",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "Conflict",
        429: "SubscriptionRequestsThrottled",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    },
    AAD: {
        400: "invalid_request",
        401: "invalid_client",
        429: "temporarily_unavailable",
        503: "temporarily_unavailable",
    },
    DATABRICKS: {
        400: "INVALID_PARAMETER_VALUE",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "ENDPOINT_NOT_FOUND",
        405: "BAD_REQUEST",
        409: "RESOURCE_CONFLICT",
        429: "TOO_MANY_REQUESTS",
        500: "INTERNAL_ERROR",
        503: "TEMPORARILY_UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    },
}


class SimError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str = "",
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


def platform_of(path: str) -> str:
    if path.startswith("/subscriptions/"):
        return ARM
    if path.startswith("/databricks/"):
        return DATABRICKS
    if path.startswith(("/_sim/", "/receivers/")):  # receivers answer for themselves
        return SIMULATOR
    return AAD


def error_response(platform: str, error: SimError) -> web.Response:
    code = error.code or _CODES.get(platform, {}).get(error.status) or _fallback(error.status)
    if platform == ARM:
        body: dict = {"error": {"code": code, "message": error.message}}
    elif platform == AAD:
        body = {"error": code, "error_description": error.message}
    else:
        body = {"error_code": code, "message": error.message}
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(0, math.ceil(error.retry_after_s)))
        if platform == ARM:
            headers["x-ms-ratelimit-remaining-subscription-reads"] = "0"
            headers["x-ms-ratelimit-remaining-subscription-writes"] = "0"
    return web.json_response(body, status=error.status, headers=headers)


def _fallback(status: int) -> str:
    return "ServerError" if status >= 500 else "ClientError"
