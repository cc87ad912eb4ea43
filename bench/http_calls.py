"""HTTP client micro-benchmark: stock httpx vs the httpx-aiohttp transport, per ADF call.

    python bench/http_calls.py [--calls 6000] [--concurrency 64] [--latency-ms 0]
                               [--rounds 3] [--keep]

The platform simulator runs in its own process, so this process's CPU is the client's alone.
Each *action* is the pair of ARM calls an ADF status check and idempotency look make:
``GET .../pipelineruns/{id}`` and ``POST .../queryPipelineRuns`` (JSON body), with a bearer
token, over TLS (the simulator's https listener and its CA), every answer read through
``streams.adapters.http.send_json`` (streamed, capped) and parsed as JSON;
``--concurrency`` actions in flight from one uvloop.

Variants, both ``streams.adapters.http.http_client()`` (proxies from the environment, no
redirects), measured in turn against the same simulator (``--rounds`` times each,
alternating, so the machine's drift hits both):

* ``httpx`` - stock httpx on its own httpcore pool (the baseline);
* ``httpx-aiohttp`` - the same client API on the ``httpx-aiohttp`` transport (aiohttp's
  pool), what the worker uses.

Prints per variant ``calls_per_s`` and ``cpu_us_per_call`` (median round) and the ratios
``cpu_ratio_httpx_vs_aiohttp`` (> 1: the aiohttp transport needs less CPU per call) and
``rate_ratio_aiohttp_vs_httpx`` (> 1: it completes more calls per second).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

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

from streams.adapters.http import http_client, send_json

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


def token(sim_url: str, ca_file: str) -> str:
    answer = httpx.post(
        f"{sim_url}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "bench",
            "client_secret": "bench",
            "scope": "https://management.azure.com/.default",
        },
        verify=ca_file,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


# ---- the variants: each returns (call, close) ------------------------------------------------


def variant(transport: str, ca_file: str) -> Callable[[dict[str, str]], tuple[Call, Any]]:
    def build(headers: dict[str, str]) -> tuple[Call, Any]:
        client = http_client(max_connections=256, ca_bundle=ca_file, transport=transport)

        async def call(method: str, url: str, body: Any) -> dict:
            answer = await send_json(
                client, method, url, query=API, body=body, headers=headers, timeout_s=30, what="b"
            )
            return answer.json()

        return call, client.aclose

    return build


# ---- measuring -------------------------------------------------------------------------------


async def measure(variant: str, call: Call, base: str, actions: int, concurrency: int) -> CallRound:
    async def action() -> None:
        await call("GET", f"{base}/pipelineruns/{RUN}", None)
        await call("POST", f"{base}/queryPipelineRuns", QUERY)

    return await call_round(variant, [action] * actions, concurrency, calls_per_action=2)


async def bench(args: argparse.Namespace, sim_url: str, ca_file: str) -> list[CallRound]:
    headers = {"Authorization": f"Bearer {token(sim_url, ca_file)}"}
    base = f"{sim_url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DataFactory/factories/{FACTORY}"
    variants = {"httpx": variant("httpx", ca_file), "httpx-aiohttp": variant("aiohttp", ca_file)}
    clients = {name: build(headers) for name, build in variants.items()}
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
            progress(f"simulator {sim.https_url} (latency {args.latency_ms:g} ms)")
            rounds = uvloop.run(bench(args, sim.https_url, sim.ca_file))
        finally:
            sim.stop()

    print(
        f"== http calls: simulator latency {args.latency_ms:g} ms, {args.concurrency} actions "
        f"in flight, {args.calls} calls per round (GET run + POST queryPipelineRuns, TLS) =="
    )
    median = {}
    for name, (middle, errors) in median_rounds(rounds).items():
        median[name] = middle
        print(f"{name}: calls_per_s: {middle.per_s:.0f}  cpu_us_per_call: {middle.cpu_us:.0f}")
        if errors:
            print(f"  errors: {dict(errors)}")
    httpx_, aio = median["httpx"], median["httpx-aiohttp"]
    print(f"cpu_ratio_httpx_vs_aiohttp: {httpx_.cpu_us / aio.cpu_us:.2f}")
    print(f"rate_ratio_aiohttp_vs_httpx: {aio.per_s / httpx_.per_s:.2f}")


if __name__ == "__main__":
    main()
