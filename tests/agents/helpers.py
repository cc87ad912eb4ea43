"""Helpers the agent tests share: a topic that records what would be sent, and requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.policy.model import ActionRequest, Alert, Classification


@dataclass
class RecordingTopic:
    sent: list[tuple[str, bytes, int | None]] = field(default_factory=list)
    fail: bool = False

    async def send(self, *, key, value, partition=None, value_serializer="raw"):
        assert value_serializer == "raw"  # the outbox encodes batches itself
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((key, value, partition))


def request(chain_id: str, due_at: int) -> ActionRequest:
    found = Alert(alert_id=chain_id, source="adf", kind="pipeline_run", scope="f", run_id="r")
    return ActionRequest(
        action_id=f"{chain_id}#1:retry_pipeline",
        chain_id=chain_id,
        dedup_key=chain_id,
        action="retry_pipeline",
        step="execute",
        attempt=1,
        max_attempts=3,
        due_at=due_at,
        alert=found,
        classification=Classification("GatewayTimeout", "low", "retry_pipeline", 3, (5,), "t"),
    )
