"""A forward and CONNECT proxy on 127.0.0.1 for proxy tests, recording what passed through.

Plain-http requests arrive in absolute form (``GET http://host:port/path HTTP/1.1``) and are
forwarded with ``Connection: close``, so every request opens its own proxy connection and is
seen; ``CONNECT host:port`` (https) is answered 200 and tunnelled. ``seen`` holds
``(method, target)`` per request or tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class LoopbackProxy:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> LoopbackProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def seen_paths(self) -> list[tuple[str, str]]:
        """``(method, path)`` of each plain-http request (the query left out)."""
        return [(method, urlsplit(target).path) for method, target in self.seen]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *fields = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        self.seen.append((method, target))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            url = urlsplit(target)
            upstream_reader, upstream_writer = await asyncio.open_connection(
                url.hostname, url.port or 80
            )
            origin_form = url.path + (f"?{url.query}" if url.query else "")
            kept = [
                f
                for f in fields
                if f and not f.lower().startswith(("connection:", "proxy-connection:"))
            ]
            forwarded = [f"{method} {origin_form or '/'} {version}", *kept, "Connection: close"]
            upstream_writer.write(("\r\n".join(forwarded) + "\r\n\r\n").encode("latin-1"))
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()
