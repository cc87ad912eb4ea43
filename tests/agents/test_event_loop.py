"""The worker's event loop comes from settings: uvloop by default, plain asyncio on request."""

from __future__ import annotations

import asyncio

import pytest

from pipemedic.worker import use_event_loop
from streams.settings import Settings


@pytest.fixture
def restore_policy():
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


def test_default_installs_uvloop(restore_policy) -> None:
    uvloop = pytest.importorskip("uvloop")
    assert Settings().event_loop == "uvloop"
    assert use_event_loop(Settings()) == "uvloop"
    loop = asyncio.get_event_loop_policy().new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_leaves_the_policy_alone(restore_policy) -> None:
    before = asyncio.get_event_loop_policy()
    assert use_event_loop(Settings(event_loop="asyncio")) == "asyncio"
    assert asyncio.get_event_loop_policy() is before
