"""A rebalance waits for the actions of the partitions it takes away (agents.common.InFlight)."""

from __future__ import annotations

import asyncio

from agents.common import InFlight


async def test_a_revocation_waits_for_its_partitions_actions_and_only_those():
    in_flight = InFlight()
    release = {tp: asyncio.Event() for tp in ("a/0", "a/1")}
    ended: list[str] = []

    async def action(tp: str) -> None:
        await release[tp].wait()
        ended.append(tp)

    for tp in ("a/0", "a/1"):
        in_flight.add(tp, asyncio.create_task(action(tp)))
    settling = asyncio.ensure_future(in_flight.settle({"a/0"}, timeout_s=5))
    await asyncio.sleep(0)
    assert not settling.done()  # a/0's action is still running
    release["a/0"].set()
    assert await settling == 0 and ended == ["a/0"]  # a/1 was not waited for
    assert set(in_flight.by_tp) == {"a/1"}  # a finished action is forgotten
    release["a/1"].set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert in_flight.by_tp == {}


async def test_an_action_that_hangs_is_waited_for_only_up_to_the_timeout():
    in_flight = InFlight()
    hang = asyncio.create_task(asyncio.Event().wait())
    in_flight.add("a/0", hang)
    assert await in_flight.settle({"a/0"}, timeout_s=0.01) == 1
    assert await in_flight.settle({"b/3"}, timeout_s=5) == 0  # nothing of it in flight
    hang.cancel()
