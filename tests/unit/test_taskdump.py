"""The task dump names every await down to what a stuck task waits on."""

from __future__ import annotations

import asyncio

from pipemedic.taskdump import await_chain


async def test_the_chain_goes_down_to_the_awaited_future():
    gate = asyncio.Event()

    async def inner() -> None:
        await gate.wait()

    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    chain = await_chain(task.get_coro())
    assert [line.rsplit(" ", 1)[-1] for line in chain[:3]] == ["outer", "inner", "wait"]
    assert chain[-1].startswith("waiting on ")
    gate.set()
    await task
