"""HTTP client micro-benchmark: CPU per ADF call for the clients pipemedic could use.

    python bench/http_calls.py [--calls 6000] [--concurrency 64] [--latency-ms 0]
                               [--rounds 3] [--keep]

The platform simulator runs in its own process, so this process's CPU is the client's alone.
Each *action* is the pair of ARM calls an ADF status check and idempotency look make:
``GET .../pipelineruns/{id}`` and ``POST .../queryPipelineRuns`` (JSON body), with a bearer
token, every answer parsed as JSON; ``--concurrency`` actions in flight from one uvloop.

Variants, measured in turn against the same simulator (``--rounds`` times each, alternating,
so the machine's drift hits all of them):

* ``aiohttp`` - the baseline: a bare ``aiohttp.ClientSession`` (no cookie jar, one pool),
  the client the worker used before;
* ``httpx`` - a plain ``httpx.AsyncClient`` on its own httpcore pool;
* ``wire`` - ``streams.adapters.wire.Pool`` alone (bytes in, bytes out);
* ``shared`` - ``streams.adapters.http.send_json`` over ``shared_http_client()``: the httpx
  API the ADF, Azure AD and playbook adapters use, on the wire pool.

Prints per variant ``calls_per_s`` and ``cpu_us_per_call`` (median round) and the ratios
``cpu_ratio_aiohttp_vs_wire`` and ``cpu_ratio_aiohttp_vs_shared`` (> 1: less CPU than the
baseline).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import httpx
import uvloop
import yaml
from common import (
    CallRound,
    SimulatorProcess,
    call_round,
    median_rounds,
    progress,
    removed_unless,
    run_dir,
)

from streams.adapters import wire
from streams.adapters.http import send_json, shared_http_client

SUB, RG, FACTORY, RUN = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "rg-bench", "fac-bench", "run-1"
TENANT = "bench-tenant"
API = {"api-version": "2018-06-01"}
QUERY = {
    "lastUpdatedAfter": "2026-11-30T00:00:00Z",
    "lastUpdatedBefore": "2026-12-31T00:00:00Z",
    "filters": [{"operand": "RunGroupId", "operator": "Equals", "values": [RUN]}],
}

Call = Callable[[str, str, Any], Awaitable[dict]]  # method, url, body -> parsed answer


def build_world(latency_ms: float) -> dict[str, Any]:
    return {
        "latency_ms": latency_ms,
        "call_log_limit": 1000,  # the log is not read here
        "azure_ad": {"tenant_id": TENANT, "client_id": "bench", "client_secret": "bench"},
        "factories": [
            {
                "name": FACTORY,
                "subscription": SUB,
                "resource_group": RG,
                "pipelines": [{"name": "Load_Orders", "reruns": ["Succeeded"]}],
                "runs": [{"run_id": RUN, "pipeline": "Load_Orders", "status": "Failed"}],
            }
        ],
    }


def token(sim_url: str) -> str:
    answer = httpx.post(
        f"{sim_url}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "bench",
            "client_secret": "bench",
            "scope": "https://management.azure.com/.default",
        },
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


# ---- the variants: each returns (call, close) ------------------------------------------------


def aiohttp_variant(headers: dict[str, str]) -> tuple[Call, Any]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=0),
        cookie_jar=aiohttp.DummyCookieJar(),
    )

    async def call(method: str, url: str, body: Any) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        fields = {**headers, "Content-Type": "application/json"} if data else headers
        async with session.request(method, url, params=API, data=data, headers=fields) as answer:
            return json.loads(await answer.read())

    return call, session.close


def httpx_variant(headers: dict[str, str]) -> tuple[Call, Any]:
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=256))

    async def call(method: str, url: str, body: Any) -> dict:
        answer = await client.request(method, url, params=API, json=body, headers=headers)
        return answer.json()

    return call, client.aclose


def wire_variant(headers: dict[str, str]) -> tuple[Call, Any]:
    pool = wire.Pool()
    fields = [(name.encode(), value.encode()) for name, value in headers.items()]
    with_body = [*fields, (b"Content-Type", b"application/json")]

    async def call(method: str, url: str, body: Any) -> dict:
        parts = urlsplit(url)
        target = f"{parts.path}?{urlencode(API, quote_via=quote)}"
        data = json.dumps(body).encode() if body is not None else b""
        answer = await pool.exchange(
            method,
            (parts.scheme, parts.hostname or "", parts.port or 80),
            target,
            with_body if data else fields,
            data,
            connect_timeout=30,
            read_timeout=30,
        )
        return json.loads(answer.body)

    return call, pool.close


def shared_variant(headers: dict[str, str]) -> tuple[Call, Any]:
    client = shared_http_client()

    async def call(method: str, url: str, body: Any) -> dict:
        answer = await send_json(
            client, method, url, query=API, body=body, headers=headers, timeout_s=30
        )
        return answer.json()

    return call, client.aclose


VARIANTS = {
    "aiohttp": aiohttp_variant,
    "httpx": httpx_variant,
    "wire": wire_variant,
    "shared": shared_variant,
}


# ---- measuring -------------------------------------------------------------------------------


async def measure(variant: str, call: Call, base: str, actions: int, concurrency: int) -> CallRound:
    async def action() -> None:
        await call("GET", f"{base}/pipelineruns/{RUN}", None)
        await call("POST", f"{base}/queryPipelineRuns", QUERY)

    return await call_round(variant, [action] * actions, concurrency, calls_per_action=2)


async def bench(args: argparse.Namespace, sim_url: str) -> list[CallRound]:
    headers = {"Authorization": f"Bearer {token(sim_url)}"}
    base = f"{sim_url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DataFactory/factories/{FACTORY}"
    clients = {name: build(headers) for name, build in VARIANTS.items()}
    try:
        for name, (call, _) in clients.items():  # pools and connections built outside
            progress(f"warming up {name} ...")
            await measure(name, call, base, 2 * args.concurrency, args.concurrency)
        rounds = []
        for r in range(args.rounds):
            for name, (call, _) in clients.items():
                result = await measure(name, call, base, args.calls // 2, args.concurrency)
                rounds.append(result)
                progress(
                    f"round {r + 1} {name}: {result.per_s:,.0f} calls/s, "
                    f"{result.cpu_us:.0f} us CPU/call, errors {sum(result.errors.values())}"
                )
        return rounds
    finally:
        for _, close in clients.values():
            await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=6000, help="calls per round")
    parser.add_argument("--concurrency", type=int, default=64, help="actions in flight")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (simulator log)")
    args = parser.parse_args()

    directory = run_dir("http-calls")
    with removed_unless(directory, args.keep):
        world_file = directory / "world.yaml"
        world_file.write_text(yaml.safe_dump(build_world(args.latency_ms), sort_keys=False))
        sim = SimulatorProcess(world_file, directory / "simulator.log").start()
        try:
            progress(f"simulator {sim.url} (latency {args.latency_ms:g} ms)")
            rounds = uvloop.run(bench(args, sim.url))
        finally:
            sim.stop()

    print(
        f"== http calls: simulator latency {args.latency_ms:g} ms, {args.concurrency} actions "
        f"in flight, {args.calls} calls per round (GET run + POST queryPipelineRuns) =="
    )
    median = {}
    for name, (middle, errors) in median_rounds(rounds).items():
        median[name] = middle
        print(f"{name}: calls_per_s: {middle.per_s:.0f}  cpu_us_per_call: {middle.cpu_us:.0f}")
        if errors:
            print(f"  errors: {dict(errors)}")
    base = median["aiohttp"].cpu_us
    print(f"cpu_ratio_aiohttp_vs_wire: {base / median['wire'].cpu_us:.2f}")
    print(f"cpu_ratio_aiohttp_vs_shared: {base / median['shared'].cpu_us:.2f}")
    print(f"cpu_ratio_httpx_vs_shared: {median['httpx'].cpu_us / median['shared'].cpu_us:.2f}")


if __name__ == "__main__":
    main()
