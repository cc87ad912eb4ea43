"""``kill -USR2 <worker pid>``: every task's await chain, innermost last, in the worker's log.

mode's own ``SIGUSR1`` dump shows each task's outermost frame only; a stage that stopped
moving is usually waiting several awaits deeper (a lock, a send, a buffer). This walks each
coroutine's ``cr_await`` chain down to the future it waits on.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

log = logging.getLogger("pipemedic")


def await_chain(coro: Any, limit: int = 40) -> list[str]:
    """``file:line function`` of each coroutine or generator ``coro`` awaits, outermost first,
    then what the innermost waits on (a future's iterator, for a future)."""
    chain: list[str] = []
    while coro is not None and len(chain) < limit:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        frame = frame or getattr(coro, "ag_frame", None)
        if frame is None:
            chain.append(f"waiting on {coro!r}"[:200])
            break
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return chain


def dump_tasks() -> None:
    for task in asyncio.all_tasks():
        lines = "\n    ".join(await_chain(task.get_coro()))
        log.warning("task %s:\n    %s", task.get_name(), lines)


def install(loop: asyncio.AbstractEventLoop) -> None:
    loop.add_signal_handler(signal.SIGUSR2, dump_tasks)
