"""The simulator as a real HTTP server (aiohttp) on a loopback port.

Decides what every request goes through, in order: the error modes' verdict (latency, then a
hang, a throttle or a failure), body parsing, the platform handler, and finally one entry in
the call log. Latency and hangs are ``asyncio.sleep``, so thousands of requests wait at once
and nothing is serialised; the state moves themselves are synchronous and tiny.

Three ways to host it: ``async with SimulatorServer(world) as sim`` on the caller's event
loop, :func:`start_in_thread` for synchronous code (its own loop on a daemon thread), and
``python -m pipemedic.simulator --world FILE --port N`` standalone. ``GET /_sim/calls`` and
``POST /_sim/reset`` expose the call log and a reset to other processes.

The same app also answers over TLS on a second port (``https_url``), with a certificate for
127.0.0.1 and localhost from a CA made for this run (``trustme``; its PEM is ``ca_file``):
azure-identity's credentials refuse any authority that is not https, and clients should
meet the TLS they meet in production. Both listeners share one call log.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from pipemedic.simulator.aad import AzureADSim
from pipemedic.simulator.adf import AdfSim
from pipemedic.simulator.calls import Call, CallLog, redact
from pipemedic.simulator.databricks import DatabricksSim
from pipemedic.simulator.faults import ErrorModes
from pipemedic.simulator.protocol import BODY, SIMULATOR, SimError, error_response, platform_of
from pipemedic.simulator.receivers import Receivers
from pipemedic.simulator.world import World, load_world

WorldSource = World | str | Path | Mapping[str, Any]
_MALFORMED = object()
_CLIENT_GONE = 499  # logged when a client gave up (e.g. timed out) before the answer


class Simulator:
    """Platform state, error modes and call log; :meth:`app` puts them behind HTTP."""

    def __init__(self, world: WorldSource, *, clock: Callable[[], float] = time.time) -> None:
        self.world = load_world(world)
        self.clock = clock
        self.azure_ad = AzureADSim(self.world.azure_ad, clock)
        self.adf = AdfSim(self.world, self.azure_ad, clock)
        self.databricks = DatabricksSim(self.world, clock, self.azure_ad)
        self.error_modes = ErrorModes(self.world)
        self.log = CallLog(self.world.call_log_limit)
        self.receivers = Receivers(clock)  # Teams, Slack, PagerDuty, webhooks (receivers.py)

    def reset(self) -> None:
        """Back to the world as loaded: state, error-mode budgets, tokens and call log."""
        self.azure_ad.reset()
        self.adf.reset()
        self.databricks.reset()
        self.error_modes.reset()
        self.log.clear()
        self.receivers.reset()

    @property
    def calls(self) -> list[Call]:
        return self.log.snapshot()

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        return self.log.count(method, path, status)

    def app(self) -> web.Application:
        @web.middleware
        async def simulate(request: web.Request, handler: Callable) -> web.StreamResponse:
            if platform_of(request.path) == SIMULATOR:
                return await handler(request)
            return await self._simulate(request, handler)

        app = web.Application(middlewares=[simulate], client_max_size=8 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/_sim/calls", self._calls_endpoint),
                web.post("/_sim/reset", self._reset_endpoint),
            ]
        )
        app.add_routes(self.azure_ad.routes() + self.adf.routes() + self.databricks.routes())
        app.add_routes(self.receivers.routes())
        return app

    async def _simulate(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        platform = platform_of(request.path)
        path = request.rel_url.raw_path
        verdict = self.error_modes.judge(request.method, path)
        body = await _read_body(request)
        request[BODY] = None if body is _MALFORMED else body
        response: web.StreamResponse | None = None
        try:
            if verdict.latency_s > 0:
                await asyncio.sleep(verdict.latency_s)
            if verdict.hang_s is not None:
                await asyncio.sleep(verdict.hang_s)
                raise SimError(504, "simulated timeout: the platform did not answer in time")
            if verdict.error is not None:
                raise verdict.error
            if body is _MALFORMED:
                raise SimError(400, "The request body is not valid JSON.")
            response = await handler(request)
        except SimError as error:
            response = error_response(platform, error)
        except web.HTTPException as exc:  # no route, wrong method
            response = error_response(platform, SimError(exc.status, exc.reason or "not found"))
        finally:
            # runs on cancellation too (client gone), so hung calls are in the log
            logged_body = None if body is _MALFORMED else redact(body)
            status = response.status if response is not None else _CLIENT_GONE
            self.log.record(
                Call(
                    request.method,
                    path,
                    dict(request.query),
                    logged_body,
                    status,
                    self.clock(),
                )
            )
        return response

    async def _calls_endpoint(self, request: web.Request) -> web.Response:
        """``?method=&path=<fnmatch>&status=&limit=<newest N; 0 = count only>``"""
        query = request.query
        try:
            status = int(query["status"]) if "status" in query else None
            limit = int(query["limit"]) if "limit" in query else None
        except ValueError:
            return web.json_response({"error": "status and limit must be integers"}, status=400)
        calls = self.log.matching(query.get("method"), query.get("path"), status)
        shown = calls if limit is None else calls[len(calls) - limit :] if limit > 0 else []
        return web.json_response({"count": len(calls), "calls": [c.as_json() for c in shown]})

    async def _reset_endpoint(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})


def _listening(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _tls_context(folder: str, host: str) -> tuple[ssl.SSLContext, str]:
    """A server context with a certificate for ``host``, 127.0.0.1 and localhost, signed by
    a CA made now; returns it and the CA's PEM file (what clients must trust)."""
    import trustme  # a dependency of the simulator only; the worker never needs it

    authority = trustme.CA(organization_name="pipemedic simulator")
    names = dict.fromkeys([host, "127.0.0.1", "localhost"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*names).configure_cert(context)
    ca_file = f"{folder}/ca.pem"
    authority.cert_pem.write_to_path(ca_file)
    return context, ca_file


async def _read_body(request: web.Request) -> Any:
    if not request.body_exists:
        return None
    raw = await request.read()
    if not raw:
        return None
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        return json.loads(raw)
    except ValueError:
        return _MALFORMED


class _Addresses:
    """Where the simulator answers, and what it was asked (the call log is thread-safe)."""

    url: str
    sim: Simulator

    @property
    def calls(self) -> list[Call]:
        return self.sim.calls

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        return self.sim.count(method, path, status)

    def matching(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> list[Call]:
        return self.sim.log.matching(method, path, status)

    https_url: str
    ca_file: str

    @property
    def arm_url(self) -> str:
        return self.https_url

    @property
    def authority_url(self) -> str:
        """What azure-identity's ``authority`` needs: https."""
        return self.https_url

    @property
    def imds_url(self) -> str:
        """For ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (IMDS over plain http, as on a VM)."""
        return self.url

    @property
    def app_service_url(self) -> str:
        """For ``IDENTITY_ENDPOINT`` (App Service managed identity)."""
        return f"{self.url}/msi/token"

    def databricks_host(self, workspace_id: str) -> str:
        return f"{self.url}/databricks/{workspace_id}"


class SimulatorServer(_Addresses):
    """``async with SimulatorServer(world) as sim:`` serves on ``sim.url`` until the block ends."""

    def __init__(
        self,
        world: WorldSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sim = Simulator(world, clock=clock)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._tls_dir: str | None = None
        self.url = ""
        self.https_url = ""
        self.ca_file = ""

    def reset(self) -> None:
        self.sim.reset()

    async def start(self) -> SimulatorServer:
        runner = web.AppRunner(
            self.sim.app(), access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        self._runner = runner
        sock = _listening(self._host, self._port)
        await web.SockSite(runner, sock, backlog=2048).start()
        self.url = f"http://{self._host}:{sock.getsockname()[1]}"
        self._tls_dir = tempfile.mkdtemp(prefix="pipemedic-sim-tls-")
        context, self.ca_file = _tls_context(self._tls_dir, self._host)
        secure = _listening(self._host, 0)
        await web.SockSite(runner, secure, ssl_context=context, backlog=2048).start()
        self.https_url = f"https://{self._host}:{secure.getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

    async def __aenter__(self) -> SimulatorServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class SimulatorThread(_Addresses):
    """A simulator on its own event loop and daemon thread, for synchronous callers."""

    def __init__(
        self, server: SimulatorServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        self.server, self._loop, self._thread = server, loop, thread
        self.url, self.https_url, self.ca_file = server.url, server.https_url, server.ca_file

    @property
    def sim(self) -> Simulator:
        return self.server.sim

    def reset(self) -> None:
        """Reset on the simulator's own loop, so no request sees half-reset state."""
        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: (self.sim.reset(), done.set()))
        done.wait(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def start_in_thread(
    world: WorldSource,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] = time.time,
) -> SimulatorThread:
    server = SimulatorServer(world, host=host, port=port, clock=clock)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failures: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # reported to the starting thread
            failures.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(server.stop())
            loop.close()

    thread = threading.Thread(target=serve, name="pipemedic-simulator", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the simulator did not start within 30 s")
    if failures:
        raise failures[0]
    return SimulatorThread(server, loop, thread)
