"""Admission: every new platform action is admitted, held or handed to people here, once,
on the one partition of the ``admission`` topic (:mod:`streams.policy.admission`).

Its batches are decided in order against the ``admission`` table; what they lead to is sent
(and acknowledged) before the table is written, so a crash in between decides the batch
again from the state before it, never from a state that claims what was not sent.
"""

from __future__ import annotations

from typing import Any

from agents import metrics
from agents.common import CRASH_WORKER, each_batch
from agents.outbox import Outbox
from streams.app import Topology
from streams.policy import routing
from streams.policy.admission import Admission, AdmissionPolicy
from streams.policy.model import ActionRequest


class Pending:
    """The table as a batch sees it (a :class:`streams.policy.admission.Store`): the batch's
    own writes first, the table under them. Written through only by :meth:`commit`, after
    the batch's effects were sent."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.writes: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.writes:
            return self.writes[key]
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes[key] = value

    def commit(self) -> None:
        for key, value in self.writes.items():
            self.table[key] = value
        self.writes.clear()


class Admissions:
    """Decides the batches of the ``admission`` topic at the time of ``topology.clock``."""

    def __init__(self, topology: Topology, table: Any, policy: AdmissionPolicy) -> None:
        self.topology = topology
        self.table = table
        self.policy = policy

    def spent_usd(self) -> float:
        """Today's reserved spend, as this worker's copy of the table holds it."""
        return Admission(self.policy, Pending(self.table)).spent_usd(self.topology.clock.now_ms())

    async def __call__(self, partition: int, requests: list[ActionRequest]) -> None:
        now = self.topology.clock.now_ms()
        pending = Pending(self.table)
        admission = Admission(self.policy, pending)
        outbox = Outbox(self.topology)
        for request in requests:
            outbox.add_effects(admission.decide(request, now), now=now)
        await outbox.flush()
        pending.commit()


def register(topology: Topology, policy: AdmissionPolicy) -> Admissions:
    stage = Admissions(topology, topology.admissions, policy)
    metrics.LIVE.add(
        "pipemedic_storms",
        "Storms going on (held or probing), by scope, on the worker that owns admission",
        ("scope",),
        lambda: storms_on(topology.admissions),
    )

    @topology.app.agent(topology.admission, name="admission", **CRASH_WORKER)
    async def admission(stream: Any) -> None:
        await each_batch(
            topology,
            stream,
            "action_request",
            ActionRequest.from_dict,
            stage,
            lane=routing.ADMISSION,
        )

    return stage


def storms_on(table: Any) -> dict[tuple[str, ...], float]:
    """``storm|<rule>|<scope>`` entries whose storm is going on."""
    return {
        (key.split("|", 2)[2],): 1.0
        for key, value in table.items()
        if key.startswith("storm|") and value and value.get("state")
    }
