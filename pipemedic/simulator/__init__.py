"""A local stand-in for Azure AD, Azure Data Factory and Databricks.

One aiohttp server answers the REST paths pipemedic's adapters call, with state and failure
behaviour taken from a world file (see ``docs/simulator.md``). It exists so adapters, agents
and benchmarks run against real HTTP - real clients, real connection pools, real error
bodies - without cloud credentials.
"""

from pipemedic.simulator.calls import Call
from pipemedic.simulator.server import (
    Simulator,
    SimulatorServer,
    SimulatorThread,
    start_in_thread,
)
from pipemedic.simulator.world import World, WorldError, load_world, world_from_dict

__all__ = [
    "Call",
    "Simulator",
    "SimulatorServer",
    "SimulatorThread",
    "World",
    "WorldError",
    "load_world",
    "start_in_thread",
    "world_from_dict",
]
