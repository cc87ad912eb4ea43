"""``python -m pipemedic.simulator --world FILE --port N``: serve a world until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from importlib import resources

from pipemedic.simulator.server import SimulatorServer


def _example_world() -> str:
    return str(resources.files("pipemedic") / "data" / "worlds" / "example.yaml")


async def _serve(world: str, host: str, port: int) -> None:
    async with SimulatorServer(world, host=host, port=port) as server:
        print(f"pipemedic simulator serving {world} on {server.url}", flush=True)
        print(f"  https: {server.https_url} (CA: {server.ca_file})", flush=True)
        for ws in server.sim.world.workspaces:
            print(
                f"  databricks workspace {ws.workspace_id}: {server.databricks_host(ws.workspace_id)}"
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipemedic.simulator", description=__doc__)
    parser.add_argument(
        "--world", default=None, help="world file (YAML or JSON); default: the example world"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.world or _example_world(), args.host, args.port))


if __name__ == "__main__":
    main()
