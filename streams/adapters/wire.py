"""HTTP/1.1 exchanges over a keep-alive pool of asyncio connections, parsed by httptools.

Why not aiohttp (which this replaced): every platform call in pipemedic is one small JSON
request with one small JSON answer, and at hundreds of actions per second the client's own
CPU per exchange decides how many actions one worker completes. aiohttp's ``ClientSession``
spends most of its time on features no pipemedic call uses (cookies, tracing, redirects,
middlewares, per-request header and URL objects); this pool writes each request as one buffer
and lets llhttp (httptools, the parser uvicorn uses) read the answer. ``bench/http_calls.py``
against the simulator: 95-102 us of CPU per call against aiohttp's 166-192 us.
What it does:

* one pool per worker, keyed by scheme, host and port, at most ``max_connections`` open over
  all hosts (callers beyond that wait for one to come back); idle connections are closed
  after ``keepalive_s`` (servers drop idle connections too; reusing one they just dropped
  costs a failed call);
* TLS with the system's or a given context, SNI and certificate checks as ``ssl`` does them;
* answers with ``Content-Length``, chunked, or read until the server closes;
* a connect timeout and a read timeout (no bytes for that long) per exchange;
* failures raise :class:`WireError` subclasses saying *what* failed, so callers can tell a
  timeout from a refused connection. Nothing is retried here: whether a request may be sent
  again is the caller's decision (a rerun must first look for the run it may have started).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httptools

CRLF = b"\r\n"


class WireError(Exception):
    """An exchange that did not produce an answer."""


class ConnectFailed(WireError):
    pass


class TlsFailed(ConnectFailed):
    """The TLS handshake failed (an untrusted certificate, or no TLS on that port)."""


class ConnectTimedOut(WireError):
    pass


class ReadTimedOut(WireError):
    pass


class PoolTimedOut(WireError):
    """Every connection stayed busy for longer than the caller would wait for one."""


class PeerClosed(WireError):
    """The server closed the connection, or sent something that is not HTTP."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]  # as received, names in their original case
    body: bytes


Origin = tuple[str, str, int]  # scheme, host, port

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(scheme: str, host: str, port: int | None) -> Origin:
    """Where a URL's requests go; ``port`` ``None``: the scheme's default."""
    return (scheme, host, port or DEFAULT_PORTS[scheme])


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[Answer] | None = None
        self.reason = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.keep_alive = False
        self.done = True
        self.closed = False
        self.idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.answer is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        self._rearm()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(PeerClosed("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(PeerClosed(f"not an HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is None or self.answer.done():
            return
        if self.headers_done and self._reads_until_close():
            self._finish()  # the body was "everything until the server closes"
            return
        self._fail(PeerClosed(f"server closed the connection ({exc or 'EOF'})"))

    # -- httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # llhttp forgets this once the message is complete: read it while it is known
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # informational: the answer follows
            self.headers, self.chunks, self.reason = [], [], ""
            self.headers_done = False
            return
        self._finish()

    # -- one exchange
    def send(self, data: bytes, read_timeout: float | None) -> asyncio.Future[Answer]:
        self.answer = self._loop.create_future()
        self.headers, self.chunks = [], []
        self.reason = ""
        self.headers_done = False
        self.keep_alive = False
        self.done = False
        self._read_timeout = read_timeout or 0.0
        self._rearm()
        assert self.transport is not None
        self.transport.write(data)
        return self.answer

    def reusable(self) -> bool:
        return self.done and not self.closed and self.keep_alive

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.answer is not None and not self.answer.done():
            self.answer.cancel()  # abandoned (the caller was cancelled): nobody will read it
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        self._cancel_timer()
        self.done = True
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            status = self.parser.get_status_code()
            answer.set_result(Answer(status, self.reason, self.headers, b"".join(self.chunks)))

    def _fail(self, error: WireError) -> None:
        self._cancel_timer()
        answer, self.answer = self.answer, None
        self.close()
        if answer is not None and not answer.done():
            answer.set_exception(error)

    def _reads_until_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _rearm(self) -> None:
        if not self._read_timeout:
            return
        self._cancel_timer()
        self._timer = self._loop.call_later(self._read_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(ReadTimedOut(f"no answer within {self._read_timeout:g}s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Pool:
    """Keep-alive connections to any number of origins, at most ``max_connections`` open."""

    def __init__(
        self,
        *,
        max_connections: int = 256,
        keepalive_s: float = 15.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._tls = tls
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def exchange(
        self,
        method: str,
        origin: Origin,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        pool_timeout: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Answer:
        """Send one request (``target``: the path and query, already escaped) and read the
        whole answer. ``headers`` go out as given; ``Host`` and ``Content-Length`` are added
        unless they are among them. ``pool_timeout``: how long to wait for a connection when
        all are busy (``None``: as long as it takes). ``tls``: the context for a new https
        connection, instead of the pool's."""
        head = _request_head(method, origin, target, headers, len(body))
        connection = await self._acquire(origin, connect_timeout, pool_timeout, tls)
        try:
            answer = await connection.send(head + body if body else head, read_timeout)
        except BaseException:
            connection.close()  # cancelled or failed half-way: its state is unknown
            self._release(origin, connection)
            raise
        self._release(origin, connection)
        return answer

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
                self._open -= 1
        self._idle.clear()

    async def _acquire(
        self,
        origin: Origin,
        connect_timeout: float | None,
        pool_timeout: float | None,
        tls: ssl.SSLContext | None,
    ) -> _Connection:
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            idle = self._idle.get(origin)
            now = time.monotonic()
            while idle:
                connection = idle.pop()  # the most recently used: the least likely dropped
                if not connection.closed and now - connection.idle_since < self.keepalive_s:
                    return connection
                connection.close()
                self._open -= 1
            if self._open < self.max_connections or self._evict_idle():
                break
            await self._wait_for_room(deadline)
        self._open += 1
        try:
            return await self._connect(origin, connect_timeout, tls)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _wait_for_room(self, deadline: float | None) -> None:
        """Until a connection comes back or closes (or ``deadline`` passes)."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._waiting.append(wake)
        timer = None
        if deadline is not None:
            waited = max(0.0, deadline - time.monotonic())
            timer = loop.call_later(waited, _expire, wake, waited)
        try:
            await wake
        except PoolTimedOut:
            raise
        except BaseException:
            if not wake.cancelled():  # it was woken: pass the turn on
                self._wake_one()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _connect(
        self, origin: Origin, timeout: float | None, tls: ssl.SSLContext | None
    ) -> _Connection:
        if self._closed:
            raise ConnectFailed("the connection pool is closed")
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        if scheme != "https":
            tls = None
        elif tls is None:
            tls = self._tls or _default_tls()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                ),
                timeout,
            )
        except TimeoutError as exc:
            raise ConnectTimedOut(f"connecting to {host}:{port} took over {timeout:g}s") from exc
        except ssl.SSLError as exc:
            raise TlsFailed(f"TLS with {host}:{port} failed: {exc}") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        return connection

    def _release(self, origin: Origin, connection: _Connection) -> None:
        if self._closed or not connection.reusable():
            connection.close()
            self._open -= 1
        else:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, deque()).append(connection)
        self._wake_one()

    def _evict_idle(self) -> bool:
        """Close one idle connection (to another origin) to make room; False if none."""
        for idle in self._idle.values():
            if idle:
                idle.popleft().close()
                self._open -= 1
                return True
        return False

    def _wake_one(self) -> None:
        while self._waiting:
            wake = self._waiting.popleft()
            if not wake.done():
                wake.set_result(None)
                return


def _expire(wake: asyncio.Future[None], waited: float) -> None:
    if not wake.done():
        wake.set_exception(PoolTimedOut(f"no free connection within {waited:g}s"))


def _request_head(
    method: str, origin: Origin, target: str, headers: list[tuple[bytes, bytes]], length: int
) -> bytes:
    fields = b"".join([b"%s: %s\r\n" % pair for pair in headers])
    # each field ends in the one CRLF added here: any other CR or LF would start a new line
    if fields.count(b"\n") != len(headers) or fields.count(b"\r") != len(headers):
        raise ValueError("a header name or value holds a line break")
    names = {name.lower() for name, _ in headers}
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("ascii"), fields]
    if b"host" not in names:
        scheme, host, port = origin
        authority = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
        lines.append(b"Host: %s\r\n" % authority.encode("idna"))
    if b"content-length" not in names and (length or method not in ("GET", "HEAD", "DELETE")):
        lines.append(b"Content-Length: %d\r\n" % length)
    lines.append(CRLF)
    return b"".join(lines)


_TLS: ssl.SSLContext | None = None


def _default_tls() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        import certifi

        _TLS = ssl.create_default_context(cafile=certifi.where())
    return _TLS
