"""``GET /ready``: a worker is ready only when it can take work."""

from __future__ import annotations

from agents.metrics import is_ready
from tests.agents.helpers import fake_faust_app


def test_ready_when_joined_recovered_and_assigned():
    assert is_ready(fake_faust_app()) == (True, "ready")


def test_not_ready_while_rebalancing_recovering_or_unassigned():
    assert is_ready(fake_faust_app(rebalancing=True)) == (False, "rebalancing")
    assert is_ready(fake_faust_app(in_recovery=True)) == (False, "recovering tables")
    assert is_ready(fake_faust_app(recovered=False)) == (False, "recovering tables")
    assert is_ready(fake_faust_app(assigned=())) == (False, "no partitions assigned yet")
