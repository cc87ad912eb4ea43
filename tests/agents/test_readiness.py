"""``GET /ready``: a worker is ready only when it can take work."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agents.metrics import is_ready


def _app(*, rebalancing=False, in_recovery=False, recovered=True, assigned=("tp",)):
    completed = asyncio.Event()
    if recovered:
        completed.set()
    return SimpleNamespace(
        rebalancing=rebalancing,
        in_recovery=in_recovery,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
        consumer=SimpleNamespace(assignment=lambda: set(assigned)),
    )


def test_ready_when_joined_recovered_and_assigned():
    assert is_ready(_app()) == (True, "ready")


def test_not_ready_while_rebalancing_recovering_or_unassigned():
    assert is_ready(_app(rebalancing=True)) == (False, "rebalancing")
    assert is_ready(_app(in_recovery=True)) == (False, "recovering tables")
    assert is_ready(_app(recovered=False)) == (False, "recovering tables")
    assert is_ready(_app(assigned=())) == (False, "no partitions assigned yet")
