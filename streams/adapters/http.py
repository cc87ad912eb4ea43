"""How pipemedic speaks plain HTTP to ARM (ADF) and playbook webhooks, and how an answer
becomes a :class:`PlatformError`.

One ``httpx.AsyncClient`` per worker (:func:`http_client`), on a well-kept transport:
aiohttp through the ``httpx-aiohttp`` transport by default, or stock httpx (httpcore).
httpcore's pool re-checks every pooled connection for every request and slows down sharply
with hundreds of requests in flight (encode/httpx#3215), which is what a worker has;
``bench/http_calls.py`` compares the two in one run. Either way the client

* honours ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` from the
  environment: it is built with ``trust_env`` and without ``transport=``, so httpx mounts one
  proxy transport per proxied scheme and a direct one for ``NO_PROXY`` hosts;
* trusts the system CAs, or only the PEM bundle named by ``PIPEMEDIC_CA_BUNDLE`` (a TLS
  inspecting corporate proxy, the simulator's CA in tests);
* has explicit timeouts (``PIPEMEDIC_HTTP_TIMEOUT_S`` for connect, read, write and pool);
* **follows no redirect**. ARM and playbook endpoints answer API calls directly; a 3xx means
  a wrong URL or something in between (a login page, a captive proxy), and following it would
  send the bearer token and the body somewhere we did not choose. A 3xx is
  :attr:`ErrorKind.BAD_REQUEST`, with the ``Location`` in the message;
* reads at most :data:`MAX_ANSWER_BYTES` of an answer (decoded): the body is streamed and the
  call fails as :attr:`ErrorKind.TRANSIENT` past that, so a broken proxy or a runaway
  endpoint cannot fill the worker's memory. The largest answer we expect is a
  ``queryPipelineRuns`` page (100 runs, a few hundred KB).

Azure AD tokens do not travel through this client: ``azure-identity`` credentials
(:mod:`streams.adapters.credentials`) bring their own azure-core pipeline.

Failures mean the same to the retry policy whoever answered:

* the status table below (first match wins) picks the :class:`ErrorKind`;
* a throttled caller waits for what the platform said: ``retry-after-ms`` /
  ``x-ms-retry-after-ms`` (Azure), ``Retry-After`` (seconds or an HTTP date), and when a 429
  carries neither but an ARM ``x-ms-ratelimit-remaining-*`` budget reads 0, a fixed default;
* ids that arrive in alerts become URL path segments that cannot change the path.
"""

from __future__ import annotations

import datetime
import email.utils
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx

from streams.adapters.errors import ErrorKind, PlatformError

# A 429 that names no wait at all: long enough for an ARM token bucket to refill a little,
# short enough not to stall a chain. The policy may stretch it; it never shortens it.
DEFAULT_THROTTLE_S = 10.0

# The most of one answer we read (after content decoding); past it the call fails.
MAX_ANSWER_BYTES = 4 * 1024 * 1024

# Status -> kind. Statuses not listed: 5xx -> TRANSIENT, 3xx and other 4xx -> BAD_REQUEST.
KIND_BY_STATUS: Mapping[int, ErrorKind] = {
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TRANSIENT,
    409: ErrorKind.CONFLICT,
    429: ErrorKind.THROTTLED,
}

_DETAIL_CHARS = 300

Transport = Literal["httpx", "aiohttp"]


def http_client(
    *,
    max_connections: int = 256,
    timeout_s: float = 30.0,
    ca_bundle: str | None = None,
    transport: Transport = "aiohttp",
) -> httpx.AsyncClient:
    """The one client every HTTP adapter of a worker shares; close it with ``aclose()``.

    No ``transport=`` is passed on purpose: httpx reads proxies from the environment only
    when it builds the transports itself.
    """
    options: dict[str, Any] = {
        "trust_env": True,
        "follow_redirects": False,
        "timeout": httpx.Timeout(timeout_s),
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        "verify": ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True,
    }
    if transport == "aiohttp":
        from httpx_aiohttp import HttpxAiohttpClient

        return HttpxAiohttpClient(**options)
    return httpx.AsyncClient(**options)


async def send_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    headers: Mapping[str, str],
    timeout_s: float,
    what: str,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> httpx.Response:
    """One JSON request; the answer is read in full (at most ``max_bytes``).

    Transport failures become :class:`PlatformError`; the caller decides about statuses
    (:func:`error_from_response`), so it can read throttling headers of any answer.
    """
    request = client.build_request(
        method,
        url,
        params=dict(query) if query else None,
        json=body,
        headers=dict(headers),
        timeout=timeout_s,
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise error_from_exception(exc, what) from None
    try:
        content = await _read_capped(response, max_bytes, what)
    except httpx.HTTPError as exc:
        raise error_from_exception(exc, what) from None
    finally:
        await response.aclose()
    # the body is decoded already: the copy must not claim an encoding any more
    fields = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(response.status_code, headers=fields, content=content, request=request)


async def _read_capped(response: httpx.Response, max_bytes: int, what: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if (
        declared.isdigit()
        and int(declared) > max_bytes
        and not response.headers.get("content-encoding")
    ):
        raise _too_big(what, max_bytes, response.status_code)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise _too_big(what, max_bytes, response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(what: str, max_bytes: int, status: int) -> PlatformError:
    return PlatformError(
        ErrorKind.TRANSIENT,
        f"{what}: answer larger than {max_bytes} bytes, not read",
        status=status,
    )


def path_segment(value: str, what: str) -> str:
    """``value`` as exactly one URL path segment: ``/``, ``?``, ``#`` and ``%`` are escaped.

    ``"."`` and ``".."`` cannot be escaped away (URL normalisation removes dot segments), so
    they are refused, as is the empty string that would collapse two segments into one.
    """
    if value in ("", ".", ".."):
        raise PlatformError(ErrorKind.BAD_REQUEST, f"{what} {value!r} is not a usable name")
    return quote(value, safe="")


def kind_for_status(status: int) -> ErrorKind:
    if status in KIND_BY_STATUS:
        return KIND_BY_STATUS[status]
    return ErrorKind.TRANSIENT if status >= 500 else ErrorKind.BAD_REQUEST


def arm_quota_remaining(headers: Mapping[str, str]) -> int | None:
    """The smallest ``x-ms-ratelimit-remaining-*`` request budget ARM reported, if any."""
    budgets = [
        number
        for name, value in headers.items()
        if name.lower().startswith("x-ms-ratelimit-remaining-")
        and (number := _number(value)) is not None
    ]
    return int(min(budgets)) if budgets else None


def retry_after_s(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """How long the platform asked us to wait, or ``None`` when it did not say."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        millis = _number(lowered.get(name))
        if millis is not None:
            return max(millis / 1000.0, 0.0)
    value = lowered.get("retry-after")
    if value:
        seconds = _number(value)
        if seconds is None:
            seconds = _seconds_until(value, now())
        if seconds is not None:
            return max(seconds, 0.0)
    if arm_quota_remaining(headers) == 0:
        return DEFAULT_THROTTLE_S
    return None


def error_from_response(response: httpx.Response, what: str) -> PlatformError:
    status = response.status_code
    kind = kind_for_status(status)
    wait = retry_after_s(response.headers)
    if kind is ErrorKind.THROTTLED and wait is None:
        wait = DEFAULT_THROTTLE_S
    if 300 <= status < 400:
        where = response.headers.get("location", "nowhere")
        detail = f"redirect to {where} not followed (API calls follow no redirects)"
    else:
        detail = _detail(response)
    message = f"{what}: HTTP {status}" + (f" {detail}" if detail else "")
    return PlatformError(kind, message, retry_after_s=wait, status=status)


def error_from_exception(exc: Exception, what: str) -> PlatformError:
    """Transport failures (timeouts, refused or reset connections) are worth another try."""
    if isinstance(exc, httpx.TimeoutException):
        return PlatformError(ErrorKind.TRANSIENT, f"{what}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.RequestError):
        return PlatformError(ErrorKind.TRANSIENT, f"{what}: {type(exc).__name__}: {exc}")
    return PlatformError(ErrorKind.BAD_REQUEST, f"{what}: {type(exc).__name__}: {exc}")


def json_body(response: httpx.Response, what: str) -> dict:
    """The JSON object a 2xx answer carries; a garbled answer is the platform's hiccup."""
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError as exc:
        raise PlatformError(
            ErrorKind.TRANSIENT, f"{what}: answer is not JSON", status=response.status_code
        ) from exc
    if not isinstance(body, dict):
        raise PlatformError(
            ErrorKind.TRANSIENT, f"{what}: answer is not a JSON object", status=response.status_code
        )
    return body


def _detail(response: httpx.Response) -> str:
    """The platform's own error code and message: ARM ``{"error": {code, message}}``,
    Azure AD ``{"error", "error_description"}``, Databricks-style ``{error_code, message}``."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:_DETAIL_CHARS].strip()
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        code, message = error.get("code", ""), error.get("message", "")
    elif isinstance(error, str):
        code, message = error, body.get("error_description", "")
    else:
        code, message = body.get("error_code", ""), body.get("message", "")
    return f"{code}: {message}"[:_DETAIL_CHARS].strip(": ")


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are always UTC
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp() - now
