"""How a plain-HTTP platform answer becomes a :class:`PlatformError`.

Azure AD, ADF (ARM) and the playbook webhooks all speak HTTP through one shared
``httpx.AsyncClient``; this module decides, in one place, what their failures mean to the
retry policy:

* the status table below (first match wins) picks the :class:`ErrorKind`;
* a throttled caller waits for what the platform said: ``retry-after-ms`` /
  ``x-ms-retry-after-ms`` (Azure), ``Retry-After`` (seconds or an HTTP date), and when a 429
  carries neither but an ARM ``x-ms-ratelimit-remaining-*`` budget reads 0, a fixed default;
* ids that arrive in alerts become URL path segments that cannot change the path.

Connection reuse and the client's own CPU per call decide throughput (hundreds of calls in
flight per worker), so :func:`shared_http_client` builds the one client all HTTP adapters
share. Its requests travel over a lean keep-alive pool (:class:`WireTransport`,
:mod:`streams.adapters.wire`): httpx's own pool (httpcore 1.0) re-checks every pooled
connection for every request and collapses to ~100-200 requests/s at 50+ in flight
(encode/httpx#3215), and aiohttp, used before, costs about twice the CPU per exchange
(``bench/http_calls.py``). The adapters keep the httpx API and ``httpx.MockTransport`` tests.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from streams.adapters import wire
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
        transport=WireTransport(max_connections=max_connections),
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
    target = _url(url, tuple(query.items()) if query else ())
    # the answers are small JSON: asking for them uncompressed costs less than inflating them
    fields = {"Accept-Encoding": "identity", **headers}
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


@functools.lru_cache(maxsize=4096)
def _url(url: str, query: tuple[tuple[str, str], ...]) -> httpx.URL:
    """Parsed once per distinct URL: a factory's ``queryPipelineRuns``, a run's status, the
    token endpoint come back again and again, and httpx parses a URL in ~35 us."""
    return httpx.URL(f"{url}?{urlencode(query, quote_via=quote)}" if query else url)


@functools.cache
def _timeouts(seconds: float) -> dict[str, float | None]:
    return httpx.Timeout(seconds).as_dict()


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """An httpx client that neither keeps nor sends cookies, and hands a plain request
    straight to its transport.

    ARM, Azure AD and playbook endpoints authenticate with bearer tokens; httpx's cookie jar
    costs ~7% of a worker's CPU per action (parsing every response, copying the jar into
    every request), measured with py-spy in bench/executors.py. A request with no auth, no
    redirects to follow and no event hooks needs nothing of ``AsyncClient.send`` but the
    transport and reading the body, so it skips the auth and redirect generators, the timer
    and the per-request log line (~30 us of the ~160 us a call cost through ``send``).
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._direct = transport

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        plain = (
            not stream
            and auth is httpx.USE_CLIENT_DEFAULT
            and follow_redirects is httpx.USE_CLIENT_DEFAULT
            and self.auth is None
            and not self.follow_redirects
            and not any(self.event_hooks.values())
            and not self.is_closed
        )
        if not plain:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        if "timeout" not in request.extensions:
            request.extensions["timeout"] = self.timeout.as_dict()
        response = await self._direct.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, value: object) -> None:
        return None

    def _merge_cookies(self, cookies: object = None) -> object:
        return cookies


_NO_COOKIES = _NoCookies()


class WireTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one keep-alive pool (:mod:`streams.adapters.wire`).

    The URL goes out byte for byte as httpx built it (escaped path segments stay escaped),
    timeouts follow httpx's per-request ``timeout`` extension, and the pool's failures become
    the httpx exceptions :func:`error_from_exception` understands.
    """

    def __init__(self, *, max_connections: int = 256) -> None:
        self._pool = wire.Pool(max_connections=max_connections)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        limits = request.extensions.get("timeout") or {}
        connect, pool = limits.get("connect"), limits.get("pool")
        try:
            answer = await self._pool.exchange(
                request.method,
                wire.origin(url.scheme, url.host, url.port),
                url.raw_path.decode("ascii"),
                request.headers.raw,
                await request.aread(),
                connect_timeout=connect,
                read_timeout=limits.get("read"),
                pool_timeout=pool,
            )
        except wire.PoolTimedOut as exc:
            raise httpx.PoolTimeout(str(exc), request=request) from exc
        except wire.ConnectTimedOut as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except wire.ReadTimedOut as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        except wire.ConnectFailed as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except wire.PeerClosed as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body, request=request
        )

    async def aclose(self) -> None:
        await self._pool.close()


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
