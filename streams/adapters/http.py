"""How a plain-HTTP platform answer becomes a :class:`PlatformError`.

Azure AD, ADF (ARM) and the playbook webhooks all speak HTTP through one shared
``httpx.AsyncClient``; this module decides, in one place, what their failures mean to the
retry policy:

* the status table below (first match wins) picks the :class:`ErrorKind`;
* a throttled caller waits for what the platform said: ``retry-after-ms`` /
  ``x-ms-retry-after-ms`` (Azure), ``Retry-After`` (seconds or an HTTP date), and when a 429
  carries neither but an ARM ``x-ms-ratelimit-remaining-*`` budget reads 0, a fixed default;
* ids that arrive in alerts become URL path segments that cannot change the path.

Connection reuse decides throughput (hundreds of calls in flight per worker), so
:func:`shared_http_client` builds the one client all HTTP adapters share. Its requests travel
over aiohttp's connection pool (:class:`AiohttpTransport`): httpx's own pool (httpcore 1.0)
re-checks every pooled connection for every request and collapses to ~100-200 requests/s at
50+ in flight (encode/httpx#3215), while the adapters keep the httpx API and
``httpx.MockTransport`` tests.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import httpx
import orjson
import yarl

from streams.adapters.errors import ErrorKind, PlatformError

# A 429 that names no wait at all: long enough for an ARM token bucket to refill a little,
# short enough not to stall a chain. The policy may stretch it; it never shortens it.
DEFAULT_THROTTLE_S = 10.0

# Status -> kind. Statuses not listed: 5xx -> TRANSIENT, other 4xx -> BAD_REQUEST.
# 401 reaches this table only after the caller has already refreshed its token once.
KIND_BY_STATUS: Mapping[int, ErrorKind] = {
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TRANSIENT,
    409: ErrorKind.CONFLICT,
    429: ErrorKind.THROTTLED,
}

_DETAIL_CHARS = 300


def shared_http_client(*, max_connections: int = 256, timeout_s: float = 30.0) -> httpx.AsyncClient:
    """The one client every HTTP adapter of a worker shares; close it with ``aclose()``."""
    return CookielessClient(
        transport=AiohttpTransport(max_connections=max_connections),
        timeout=httpx.Timeout(timeout_s),
    )


async def send_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    query: Mapping[str, str],
    body: Any = None,
    headers: Mapping[str, str],
    timeout_s: float,
) -> httpx.Response:
    """One JSON request, built directly as an ``httpx.Request`` and sent by ``client``.

    Same bytes on the wire as ``client.request(method, url, params=query, json=body, ...)``
    minus the client's default headers, at about half its CPU: ``AsyncClient.request`` merges
    the base URL, params, headers and cookies by re-parsing the URL several times, ~100 µs
    per call, a sixth of an ADF action's CPU in bench/executors.py.
    """
    target = f"{url}?{urlencode(query, quote_via=quote)}" if query else url
    fields = {**headers}
    content = b""
    if body is not None:
        content = orjson.dumps(body)
        fields["Content-Type"] = "application/json"
    request = httpx.Request(
        method,
        target,
        content=content,
        headers=fields,
        extensions={"timeout": _timeouts(timeout_s)},
    )
    return await client.send(request)


@functools.cache
def _timeouts(seconds: float) -> dict[str, float | None]:
    return httpx.Timeout(seconds).as_dict()


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """An httpx client that neither keeps nor sends cookies.

    ARM, Azure AD and playbook endpoints authenticate with bearer tokens; httpx's cookie jar
    costs ~7% of a worker's CPU per action (parsing every response, copying the jar into
    every request), measured with py-spy in bench/executors.py.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, value: object) -> None:
        return None

    def _merge_cookies(self, cookies: object = None) -> object:
        return cookies


_NO_COOKIES = _NoCookies()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent through one aiohttp keep-alive pool.

    The URL goes out byte for byte as httpx built it (escaped path segments stay escaped),
    timeouts follow httpx's per-request ``timeout`` extension, and aiohttp's failures become
    the httpx exceptions :func:`error_from_exception` understands.
    """

    def __init__(self, *, max_connections: int = 256) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:  # built on first use: it binds to the running loop
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # bearer tokens only, as CookielessClient
            )
        body = await request.aread()
        try:
            async with self._session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
                timeout=_aiohttp_timeout(request),
            ) as answer:
                content = await answer.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx.Response(
            answer.status, headers=list(answer.raw_headers), content=content, request=request
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _aiohttp_timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    limits = request.extensions.get("timeout") or {}
    return _client_timeout(limits.get("connect"), limits.get("pool"), limits.get("read"))


@functools.lru_cache(maxsize=64)
def _client_timeout(
    connect: float | None, pool: float | None, read: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=read,
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
