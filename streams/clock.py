"""The wall clock and the timers of the agents, in one object a test can replace.

Agents read the time only through :attr:`Topology.clock` and set timers only through it, so a
test drives time by advancing a manual clock instead of sleeping and hoping a 2-core machine
kept up (the policy layer already takes ``now`` as a parameter; databricks-sdk injects its
``Clock`` the same way).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Epoch milliseconds."""
        ...

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` on the event loop after ``delay_s``."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real time and the running event loop's timers."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(delay_s, 0.0), callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
