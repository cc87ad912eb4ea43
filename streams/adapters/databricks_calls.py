"""databricks-sdk calls run on the event loop; their HTTP exchanges go over the wire pool.

The SDK is synchronous. On a thread pool a call cost ~0.9 ms of CPU under the GIL (measured
with ``bench/databricks_calls.py``: 64 calls in flight, 50 ms latency): ~0.3 ms of it in
requests' session and adapter layers, ~0.25 ms in the threads (pool hand-offs, GIL hand-offs
around every socket wait) and urllib3, while the SDK's own work - building the request,
adding the token, mapping an error status to its exception, ``from_dict`` - is ~0.1 ms. So
the SDK keeps doing all of that, and only the exchange of bytes moves onto the loop (~0.35 ms
per call in all):

* The SDK sends every request through one seam, its ``requests.Session``.
  :func:`connect_workspace` replaces that session with a :class:`_ScriptedSession`, which
  answers each request from the *script* of the running call: the exchanges made so far.
* :meth:`SdkCalls.run` runs the operation (e.g. ``lambda w: w.clusters.get(cid)``). When the
  script has no answer for a request, :class:`_Exchange` carries the request out of the SDK;
  the worker's keep-alive pool (:mod:`streams.adapters.wire`, ~half aiohttp's CPU per
  exchange) sends it, or aiohttp when the environment names a proxy for the workspace; the
  answer joins the script and the operation runs again from the start,
  this time receiving that answer as a ``requests.Response`` (or the ``requests`` exception a
  failed connection would have raised). Most calls make one request: two passes of SDK code
  (~40 us) instead of a thread hop.

Redirects are not followed on the direct path (the REST API answers where it is asked; a
3xx reaches the SDK as the error it is), but are through a proxy, as requests did.

A rerun is faithful because an operation depends only on the answers it gets: it runs
synchronously, and its clock refuses to sleep (waiting is the retry policy's job, see
``databricks.py``), so it makes the same requests again up to the new answer. Each replayed
request is checked against the one that was sent; a difference ends the call with an error
instead of a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
import requests
import requests.utils
import yarl
from databricks.sdk import WorkspaceClient
from databricks.sdk.clock import Clock
from databricks.sdk.config import Config
from requests.structures import CaseInsensitiveDict

from streams.adapters import wire

T = TypeVar("T")

# More exchanges than this in one call means a runaway paging loop, and each rerun replays
# all earlier answers.
MAX_EXCHANGES = 50


class SdkWantedToWait(Exception):
    """Raised instead of the SDK's retry sleep; the SDK's error rides along as ``__context__``."""


class _RefuseToWait(Clock):
    # The SDK calls sleep() inside its ``except`` block, so raising here ends the call with
    # the original error attached as __context__.
    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        raise SdkWantedToWait(f"SDK wanted to retry after {seconds:.1f} s")


@dataclass(frozen=True)
class Workspace:
    """A workspace client whose requests travel through :class:`SdkCalls`."""

    client: WorkspaceClient
    proxy: str | None  # from the environment, read once
    tls: ssl.SSLContext | bool  # True: http://, nothing to verify


def connect_workspace(host: str, token: str, timeout_s: float) -> Workspace:
    """Build the SDK client (blocking: the SDK probes the host's metadata endpoint)."""
    config = Config(
        host=host,
        token=token,
        auth_type="pat",
        http_timeout_seconds=timeout_s,
        retry_timeout_seconds=1,  # bounds the host-metadata probe made while building
        clock=_RefuseToWait(),
    )
    client = WorkspaceClient(config=config)
    base = getattr(client.api_client, "_api_client", None)
    original = getattr(base, "_session", None)
    if not isinstance(original, requests.Session):
        raise RuntimeError("databricks-sdk no longer sends through api_client._api_client._session")
    session = _ScriptedSession()
    session.auth = original.auth  # the SDK's token header
    session.headers = original.headers
    # answers uncompressed: the wire pool passes bodies on as they come (with no
    # Accept-Encoding at all, a server may pick any coding)
    session.headers["Accept-Encoding"] = "identity"
    base._session = session
    original.close()
    proxy = requests.utils.select_proxy(host, requests.utils.get_environ_proxies(host))
    return Workspace(client, proxy, _trusted_cas() if host.startswith("https:") else True)


def _trusted_cas() -> ssl.SSLContext:
    """The CAs requests would trust: its CA-bundle variables, else certifi's bundle."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle or requests.utils.DEFAULT_CA_BUNDLE_PATH)


class SdkCalls:
    """Runs SDK operations on the event loop; one aiohttp pool of ``connections`` for all
    workspaces (calls beyond that wait for a free connection)."""

    def __init__(self, *, connections: int, timeout_s: float) -> None:
        self._connections = connections
        # like requests' timeout: each of connecting and every socket read, not the total
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._timeout_s = timeout_s
        self._pool = wire.Pool(max_connections=connections)
        self._http: aiohttp.ClientSession | None = None  # only through a proxy
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, workspace: Workspace, operation: Callable[[WorkspaceClient], T]) -> T:
        script = _Script()
        while True:
            script.position = 0
            bound = _SCRIPT.set(script)
            try:
                return operation(workspace.client)
            except _Exchange as wanted:
                request = wanted.request
            finally:
                _SCRIPT.reset(bound)
            if len(script.exchanges) >= MAX_EXCHANGES:
                raise RuntimeError(f"Databricks call made more than {MAX_EXCHANGES} requests")
            script.exchanges.append((request, await self._send(workspace, request)))

    def close(self) -> None:
        """Close the pooled connections on the loop they belong to, from anywhere."""
        if self._loop is None or self._loop.is_closed():
            return
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop)
        else:
            self._loop.run_until_complete(self.aclose())

    async def aclose(self) -> None:
        await self._pool.close()
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def _send(
        self, workspace: Workspace, request: requests.PreparedRequest
    ) -> _Answer | Exception:
        self._loop = asyncio.get_running_loop()
        if workspace.proxy:
            return await self._send_by_proxy(workspace, request)
        url = urlsplit(request.url)
        target = f"{url.path or '/'}?{url.query}" if url.query else url.path or "/"
        fields = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ]
        body = request.body or b""
        try:
            answer = await self._pool.exchange(
                request.method or "GET",
                wire.origin(url.scheme, url.hostname or "", url.port),
                target,
                fields,
                body.encode() if isinstance(body, str) else body,
                connect_timeout=self._timeout_s,
                read_timeout=self._timeout_s,
                pool_timeout=self._timeout_s,
                tls=workspace.tls if isinstance(workspace.tls, ssl.SSLContext) else None,
            )
        except Exception as exc:
            return as_requests_error(exc)
        headers: dict[str, str] = {}
        for raw_name, raw_value in answer.headers:  # repeated headers joined, as urllib3 does
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return _Answer(answer.status, answer.reason, headers, answer.body, request.url)

    async def _send_by_proxy(
        self, workspace: Workspace, request: requests.PreparedRequest
    ) -> _Answer | Exception:
        if self._http is None:  # built on first use: it binds to the running loop
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
            self._http = aiohttp.ClientSession(connector=connector)
        try:
            async with self._http.request(
                request.method,
                yarl.URL(request.url, encoded=True),
                headers=request.headers,
                data=request.body,
                max_redirects=30,  # as requests
                timeout=self._timeout,
                proxy=workspace.proxy,
                ssl=workspace.tls,
            ) as answer:
                content = await answer.read()
        except Exception as exc:
            return as_requests_error(exc)
        headers: dict[str, str] = {}
        for name, value in answer.headers.items():  # repeated headers joined, as urllib3 does
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return _Answer(answer.status, answer.reason or "", headers, content, str(answer.url))


# ---- the SDK's side of the seam --------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: dict[str, str]
    content: bytes
    url: str

    def response(self, request: requests.PreparedRequest) -> requests.Response:
        response = requests.Response()
        response.status_code = self.status
        response.reason = self.reason
        response.headers = CaseInsensitiveDict(self.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.url = self.url
        response.request = request
        response._content = self.content
        return response


@dataclass
class _Script:
    exchanges: list[tuple[requests.PreparedRequest, _Answer | Exception]] = field(
        default_factory=list
    )
    position: int = 0


_SCRIPT: contextvars.ContextVar[_Script | None] = contextvars.ContextVar(
    "databricks_script", default=None
)


class _Exchange(BaseException):
    """The SDK wants ``request`` sent. A BaseException, so no ``except Exception`` in the
    SDK (its retry loop among them) mistakes it for a failure."""

    def __init__(self, request: requests.PreparedRequest) -> None:
        super().__init__(request.method, request.url)
        self.request = request


class _ScriptedSession(requests.Session):
    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        files: Any = None,
        stream: bool | None = None,
        auth: Any = None,
        **ignored: Any,  # the SDK's timeout: SdkCalls applies the configured one
    ) -> requests.Response:
        script = _SCRIPT.get()
        if script is None:
            raise RuntimeError("Databricks SDK calls go through DatabricksClient")
        if json is not None or files or stream or auth or not isinstance(data, str | bytes | None):
            # none of the calls we make uses them; refuse rather than send something else
            raise RuntimeError("SDK streams, files and per-call auth are not routed")
        request = self._prepare(method, url, params, data, headers)
        if script.position == len(script.exchanges):
            raise _Exchange(request)
        sent, answer = script.exchanges[script.position]
        script.position += 1
        if (request.method, request.url, request.body) != (sent.method, sent.url, sent.body):
            raise RuntimeError(f"the SDK changed its request on replay: {sent.url} -> {url}")
        if isinstance(answer, Exception):
            raise answer
        return answer.response(request)

    def _prepare(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        data: str | bytes | None,
        headers: Mapping[str, str] | None,
    ) -> requests.PreparedRequest:
        """What requests would have sent: session headers under the call's, then the SDK's
        token header; the query encoded like requests (``None`` values dropped)."""
        if params:
            pairs = [
                (key, item)
                for key, value in params.items()
                for item in (value if isinstance(value, list | tuple) else (value,))
                if item is not None
            ]
            if pairs:
                url = f"{url}{'&' if '?' in url else '?'}{urlencode(pairs)}"
        prepared = requests.PreparedRequest()
        prepared.method = method.upper()
        prepared.url = url if _PLAIN_URL.fullmatch(url) else requests.utils.requote_uri(url)
        merged = {name.lower(): (name, value) for name, value in self.headers.items()}
        merged.update({name.lower(): (name, value) for name, value in (headers or {}).items()})
        prepared.headers = CaseInsensitiveDict()
        for name, value in merged.values():
            if value is not None:
                prepared.headers[name] = value
        prepared.body = data.encode() if isinstance(data, str) else data
        return self.auth(prepared) if self.auth is not None else prepared


# Nothing requests' requote_uri would change (it is ~10% of preparing a request).
_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&'()*+,;=]*")


# A failed exchange (the wire pool's or aiohttp's) -> the ``requests`` exception the SDK's
# retry decision and our error table always saw; first match wins.
_AS_REQUESTS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], type], ...] = (
    ((wire.ConnectTimedOut, wire.PoolTimedOut), requests.ConnectTimeout),
    (wire.ReadTimedOut, requests.ReadTimeout),
    (wire.TlsFailed, requests.exceptions.SSLError),
    (wire.WireError, requests.ConnectionError),
    (aiohttp.ConnectionTimeoutError, requests.ConnectTimeout),
    ((TimeoutError, aiohttp.ServerTimeoutError), requests.ReadTimeout),
    (aiohttp.TooManyRedirects, requests.TooManyRedirects),
    (aiohttp.ClientProxyConnectionError, requests.exceptions.ProxyError),
    (aiohttp.ClientSSLError, requests.exceptions.SSLError),
    ((aiohttp.ClientError, OSError), requests.ConnectionError),
)


def as_requests_error(exc: Exception) -> Exception:
    """The ``requests`` exception for a failed exchange; anything else is returned as is."""
    for failure, replacement in _AS_REQUESTS:
        if isinstance(exc, failure):
            return replacement(f"{type(exc).__name__}: {exc}")
    return exc
