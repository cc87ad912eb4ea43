"""Worlds, rules and alerts for the chain and delay-tier scenarios (issue 3)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipemedic.runtime import RecordTail
from pipemedic.stack import DEMO_DATA
from streams.codecs import encode_items
from streams.policy import routing
from streams.policy.model import ActionRequest, Alert, Classification

FACTORY = "adf-sales-prod"
_TEMPLATE = json.loads((DEMO_DATA / "alerts.jsonl").read_text().splitlines()[0])


def guid(label: str) -> str:
    """A run id as ADF issues them (a GUID), named by ``label`` so a test reads as a story."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pipemedic-test/{label}"))


def gateway_alert(pipeline: str, run_id: str) -> bytes:
    """A Log Alerts V2 payload (as Azure Monitor sends it) for a 504 on ``run_id``."""
    alert = json.loads(json.dumps(_TEMPLATE))
    for dimension in alert["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]:
        if dimension["name"] == "RunId":
            dimension["value"] = run_id
        elif dimension["name"] == "PipelineName":
            dimension["value"] = pipeline
    return json.dumps(alert).encode()


def world(pipelines: dict[str, list[str]], failed_runs: dict[str, str]) -> dict[str, Any]:
    """The demo factory with these pipelines (name -> how reruns end) and failed runs."""
    return {
        "azure_ad": {"tenant_id": "t", "client_id": "c", "client_secret": "s"},
        "factories": [
            {
                "name": FACTORY,
                "subscription": "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
                "resource_group": "rg-data-prod",
                "pipelines": [
                    {"name": name, "reruns": reruns, "polls_to_finish": 1}
                    for name, reruns in pipelines.items()
                ],
                "runs": [
                    {
                        "run_id": run_id,
                        "pipeline": pipeline,
                        "status": "Failed",
                        "message": "Response status code: 'GatewayTimeout (504)'.",
                    }
                    for run_id, pipeline in failed_runs.items()
                ],
            }
        ],
    }


def rules_file(folder: Path, schedules: dict[str, list[int]]) -> Path:
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"schedules": schedules}))
    return path


def manual_request(
    chain_id: str, *, due_in_s: float, hop_due_in_s: float, tier: int
) -> tuple[bytes, bytes]:
    """A ``manual`` action request as a delay tier holds it: (key, Avro batch of one)."""
    now_ms = int(time.time() * 1000)
    alert = Alert(
        alert_id=chain_id, source="adf", kind="pipeline_run", scope=FACTORY, run_id=chain_id
    )
    cls = Classification("Probe", "low", "manual", 1, (tier,), "delay probe")
    request = ActionRequest(
        action_id=f"{chain_id}#1:manual",
        chain_id=chain_id,
        dedup_key=chain_id,
        action="manual",
        step="execute",
        attempt=1,
        max_attempts=1,
        due_at=now_ms + int(due_in_s * 1000),
        alert=alert,
        classification=cls,
        tier=f"{tier}s",
        hop_due_at=now_ms + int(hop_due_in_s * 1000),
    )
    return chain_id.encode(), encode_items("action_request", [request.to_dict()])


async def wait_for_state(bootstrap: str, state: str, count: int, timeout_s: float) -> list[dict]:
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    async with RecordTail(bootstrap, routing.OUTCOMES, "outcome") as tail:
        while len(seen) < count and time.monotonic() < deadline:
            for row in await tail.poll(300):
                if row["state"] == state:
                    seen[row["chain_id"]] = row
    return list(seen.values())


async def rows_until(
    bootstrap: str,
    done: Callable[[list[dict]], bool],
    timeout_s: float,
    *,
    topic: str = routing.OUTCOMES,
    record: str = "outcome",
) -> list[dict]:
    """Items of ``topic`` from its beginning until ``done(items)`` or the timeout."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    async with RecordTail(bootstrap, topic, record) as tail:
        while time.monotonic() < deadline and not done(found):
            found += await tail.poll(300)
    return found
