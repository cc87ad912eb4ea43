"""The keep-alive pool under the shared HTTP client, against a scripted server on loopback:
reuse, the three ways an answer can end, timeouts, a server that hangs up, the connection
limit, cancellation, and the httpx exceptions the adapters see."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from streams.adapters import wire
from streams.adapters.errors import ErrorKind
from streams.adapters.http import error_from_exception, shared_http_client


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class Scripted:
    """A server answering each request with ``answer(request_bytes)``: bytes to write, or
    ``None`` to write nothing. Counts connections and keeps every request it read."""

    def __init__(self, answer: Callable[[bytes], bytes | None], *, close_after: bool = False):
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.origin = ("http", "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    await asyncio.sleep(3600)
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self.open -= 1
            writer.close()


async def call(pool: wire.Pool, server: Scripted, **kw) -> wire.Answer:
    return await pool.exchange(
        kw.pop("method", "POST"),
        server.origin,
        kw.pop("target", "/x?api-version=1"),
        kw.pop("headers", [(b"Authorization", b"Bearer t")]),
        kw.pop("body", b'{"a":1}'),
        connect_timeout=kw.pop("connect_timeout", 2.0),
        read_timeout=kw.pop("read_timeout", 2.0),
    )


async def test_sequential_calls_share_one_connection_and_send_host_and_length() -> None:
    async with Scripted(lambda r: ok()) as server:
        pool = wire.Pool()
        answers = [await call(pool, server) for _ in range(5)]
        await pool.close()
    assert [a.status for a in answers] == [200] * 5
    assert answers[0].body == b'{"ok":true}'
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /x?api-version=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"Content-Length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')


async def test_a_chunked_answer_is_joined() -> None:
    chunked = (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    async with Scripted(lambda r: chunked) as server:
        pool = wire.Pool()
        first, second = await call(pool, server), await call(pool, server)
        await pool.close()
    assert first.body == second.body == b'{"a":1}'
    assert server.connections == 1


async def test_an_answer_without_length_ends_when_the_server_closes() -> None:
    async with Scripted(lambda r: b'HTTP/1.1 200 OK\r\n\r\n{"a":1}', close_after=True) as server:
        pool = wire.Pool()
        answer = await call(pool, server)
        again = await call(pool, server)  # that connection is gone: a new one
        await pool.close()
    assert answer.body == again.body == b'{"a":1}'
    assert server.connections == 2


async def test_connection_close_is_honoured() -> None:
    async with Scripted(lambda r: ok(extra=b"Connection: close\r\n")) as server:
        pool = wire.Pool()
        for _ in range(3):
            assert (await call(pool, server)).status == 200
        await pool.close()
    assert server.connections == 3


async def test_headers_keep_their_case_and_repeats() -> None:
    reply = ok(extra=b"Retry-After: 7\r\nx-ms-ratelimit-remaining-subscription-writes: 3\r\n")
    async with Scripted(lambda r: reply) as server:
        pool = wire.Pool()
        answer = await call(pool, server)
        await pool.close()
    assert (b"Retry-After", b"7") in answer.headers
    assert (b"x-ms-ratelimit-remaining-subscription-writes", b"3") in answer.headers


async def test_no_answer_within_the_read_timeout() -> None:
    async with Scripted(lambda r: None) as server:
        pool = wire.Pool()
        with pytest.raises(wire.ReadTimedOut):
            await call(pool, server, read_timeout=0.2)
        await pool.close()


async def test_a_server_that_hangs_up_half_way_is_a_closed_peer() -> None:
    cut = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial'
    async with Scripted(lambda r: cut, close_after=True) as server:
        pool = wire.Pool()
        with pytest.raises(wire.PeerClosed):
            await call(pool, server)
        await pool.close()


async def test_garbage_is_not_an_answer() -> None:
    async with Scripted(lambda r: b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as server:
        pool = wire.Pool()
        with pytest.raises(wire.PeerClosed):
            await call(pool, server)
        await pool.close()


async def test_a_refused_connection_fails_to_connect() -> None:
    pool = wire.Pool()
    with pytest.raises(wire.ConnectFailed):
        await pool.exchange(
            "GET", ("http", "127.0.0.1", 9), "/", [], b"", connect_timeout=2, read_timeout=2
        )
    assert pool._open == 0


async def test_at_most_max_connections_are_open_and_everyone_is_answered() -> None:
    async with Scripted(lambda r: ok()) as server:
        pool = wire.Pool(max_connections=3)
        answers = await asyncio.gather(*(call(pool, server) for _ in range(40)))
        await pool.close()
    assert [a.status for a in answers] == [200] * 40
    assert server.most_open <= 3


async def test_a_cancelled_call_gives_its_connection_back() -> None:
    async with Scripted(lambda r: None if b"/hang" in r else ok()) as server:
        pool = wire.Pool(max_connections=1)
        hanging = asyncio.create_task(call(pool, server, target="/hang"))
        await asyncio.sleep(0.1)
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        answer = await asyncio.wait_for(call(pool, server), 2)  # the one slot is free again
        await pool.close()
    assert answer.status == 200 and pool._open == 0


async def test_a_line_break_in_a_header_is_refused_before_sending() -> None:
    async with Scripted(lambda r: ok()) as server:
        pool = wire.Pool()
        with pytest.raises(ValueError):
            await call(pool, server, headers=[(b"Authorization", b"Bearer t\r\nX-Evil: 1")])
        await pool.close()
    assert server.requests == []


# ---- through the shared httpx client ----------------------------------------------------------


async def test_the_shared_client_maps_a_read_timeout_to_a_transient_error() -> None:
    async with Scripted(lambda r: None) as server, shared_http_client() as http:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await http.get(f"http://127.0.0.1:{server.port}/slow", timeout=0.2)
    assert error_from_exception(caught.value, "call").kind is ErrorKind.TRANSIENT


async def test_the_shared_client_maps_a_hang_up_to_a_transient_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"
    async with Scripted(lambda r: cut, close_after=True) as server, shared_http_client() as http:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await http.get(f"http://127.0.0.1:{server.port}/cut")
    assert error_from_exception(caught.value, "call").kind is ErrorKind.TRANSIENT


async def test_the_shared_client_sends_one_host_header_and_reads_status_and_body() -> None:
    reply = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}"
    async with Scripted(lambda r: reply) as server, shared_http_client() as http:
        response = await http.post(f"http://127.0.0.1:{server.port}/run", json={"a": 1})
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert response.json() == {}
    assert server.requests[0].lower().count(b"\r\nhost:") == 1


async def test_a_connection_the_server_dropped_while_idle_is_not_reused() -> None:
    async with Scripted(lambda r: ok(), close_after=True) as server:
        pool = wire.Pool()
        await call(pool, server)
        await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
        assert (await call(pool, server)).status == 200
        await pool.close()
    assert server.connections == 2


async def test_connections_idle_past_keepalive_are_closed_not_reused() -> None:
    async with Scripted(lambda r: ok()) as server:
        pool = wire.Pool(keepalive_s=0.05)
        await call(pool, server)
        await asyncio.sleep(0.1)
        await call(pool, server)
        await pool.close()
    assert server.connections == 2 and pool._open == 0


async def test_https_checks_the_certificate_against_the_given_authority(tmp_path) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        answer_ = await wire.Pool(tls=trusted).exchange(
            "GET", ("https", "localhost", port), "/", [], b"", connect_timeout=5, read_timeout=5
        )
        assert answer_.status == 200
        with pytest.raises(wire.TlsFailed, match="certificate"):  # not in the system's CAs
            await wire.Pool().exchange(
                "GET", ("https", "localhost", port), "/", [], b"", connect_timeout=5, read_timeout=5
            )
    finally:
        server.close()


async def test_an_informational_answer_is_skipped_for_the_one_that_follows() -> None:
    early = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b'{"a":2}')
    async with Scripted(lambda r: early) as server:
        pool = wire.Pool()
        first, second = await call(pool, server), await call(pool, server)
        await pool.close()
    assert (first.status, first.body) == (200, b'{"a":2}') == (second.status, second.body)
    assert server.connections == 1


async def test_waiting_for_a_busy_pool_has_a_limit() -> None:
    async with Scripted(lambda r: None if b"/hang" in r else ok()) as server:
        pool = wire.Pool(max_connections=1)
        hanging = asyncio.create_task(call(pool, server, target="/hang", read_timeout=5))
        await asyncio.sleep(0.1)
        with pytest.raises(wire.PoolTimedOut):
            await pool.exchange(
                "GET",
                server.origin,
                "/",
                [],
                b"",
                connect_timeout=1,
                read_timeout=1,
                pool_timeout=0.2,
            )
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        assert (await call(pool, server)).status == 200  # the timed-out wait left no trace
        await pool.close()
    assert pool._open == 0 and not [w for w in pool._waiting if not w.done()]


async def test_the_shared_client_maps_a_pool_wait_to_a_transient_error() -> None:
    async with Scripted(lambda r: None) as server, shared_http_client(max_connections=1) as http:
        url = f"http://127.0.0.1:{server.port}/hang"
        first = asyncio.create_task(http.get(url, timeout=httpx.Timeout(5, pool=0.2)))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.PoolTimeout) as caught:
            await http.get(url, timeout=httpx.Timeout(5, pool=0.2))
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    assert error_from_exception(caught.value, "call").kind is ErrorKind.TRANSIENT
