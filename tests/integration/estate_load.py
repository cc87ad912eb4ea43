"""An estate-like load and the world that explains it, for crash-consistency tests and
``bench/faults.py``: ADF diagnostic messages of 100 records (queued, in-progress and succeeded
activity, pipeline and trigger runs, and a few failed pipeline runs of distinct runs) over
several factories, plus a Log Alerts V2 alert for ~30% of the failed runs. Every failure is a
gateway timeout whose one rerun succeeds, so each failed run must end as one resolved chain
with exactly one ``createRun``."""

from __future__ import annotations

import copy
import json
import random
import uuid
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
SUBSCRIPTION = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
GROUP = "rg-data-prod"
PIPELINES = tuple(f"Load_{i}" for i in range(8))
FAILED_PER_MESSAGE = 5
GATEWAY = "Error calling the endpoint 'https://partner.example.com/api'. Response status code: 'GatewayTimeout (504)'."
FINAL = frozenset({"resolved", "manual", "gave_up"})


def factory(i: int) -> str:
    return f"adf-fault-{i:02d}"


def resource_id(name: str) -> str:
    return (
        f"/SUBSCRIPTIONS/{SUBSCRIPTION.upper()}/RESOURCEGROUPS/{GROUP.upper()}"
        f"/PROVIDERS/MICROSOFT.DATAFACTORY/FACTORIES/{name.upper()}"
    )


def build_load(
    factories: int, messages: int, seed: int = 7
) -> tuple[list[bytes], dict, dict[str, tuple[str, str]]]:
    """(diagnostic messages and duplicate alerts, interleaved; the world; failed runs)."""
    rng = random.Random(seed)
    records = json.loads((FIXTURES / "adf_diagnostic_mixed_batch.json").read_text())["records"]
    activity, failed_pipeline, trigger = (copy.deepcopy(r) for r in records[:3])
    failed_pipeline["properties"]["Error"] = {
        "errorCode": "2108",
        "message": GATEWAY,
        "failureType": "UserError",
        "target": "Call partner",
    }
    alert_template = json.loads((FIXTURES / "azure_log_alert_v2.json").read_text())
    failed: dict[str, tuple[str, str]] = {}  # run id -> (factory, pipeline)
    payloads: list[bytes] = []
    for _ in range(messages):
        batch = []
        for r in range(100):
            name = factory(rng.randrange(factories))
            pipeline = rng.choice(PIPELINES)
            run_id = str(uuid.uuid4())
            base = {"resourceId": resource_id(name), "pipelineName": pipeline}
            if r < FAILED_PER_MESSAGE:
                failed[run_id] = (name, pipeline)
                batch.append({**copy.deepcopy(failed_pipeline), **base, "runId": run_id})
            elif r % 10 == 0:
                batch.append({**trigger, "resourceId": resource_id(name)})
            elif r % 3:
                status = ("Queued", "InProgress", "Succeeded")[r % 3]
                record = {**activity, **base, "pipelineRunId": run_id, "status": status}
                record["activityRunId"] = str(uuid.uuid4())
                record["operationName"] = f"{pipeline} - {status}"
                record["level"] = "Informational"
                record.pop("properties", None)
                batch.append(record)
            else:
                record = {**copy.deepcopy(failed_pipeline), **base, "runId": run_id}
                record.update(status="Succeeded", level="Informational", failureType="")
                record["properties"].pop("Error")
                batch.append(record)
        rng.shuffle(batch)
        payloads.append(json.dumps({"records": batch}).encode())
        for run_id in list(failed)[-FAILED_PER_MESSAGE:]:
            if rng.random() < 0.3:  # the same failure, alerted once more by Azure Monitor
                payloads.append(log_alert(alert_template, *failed[run_id], run_id))
    world = {
        "latency_ms": 0,
        "azure_ad": {"tenant_id": "t", "client_id": "c", "client_secret": "s"},
        "factories": [
            {
                "name": factory(i),
                "subscription": SUBSCRIPTION,
                "resource_group": GROUP,
                "pipelines": [
                    {"name": p, "reruns": ["Succeeded"], "polls_to_finish": 1} for p in PIPELINES
                ],
                "runs": [
                    {"run_id": run, "pipeline": p, "status": "Failed", "message": GATEWAY}
                    for run, (f, p) in failed.items()
                    if f == factory(i)
                ],
            }
            for i in range(factories)
        ],
    }
    return payloads, world, failed


def log_alert(template: dict, name: str, pipeline: str, run_id: str) -> bytes:
    alert = copy.deepcopy(template)
    alert["data"]["essentials"]["alertId"] += f"-{run_id}"
    values = {"RunId": run_id, "PipelineName": pipeline, "ErrorCode": "2108"}
    values["ErrorMessage"] = GATEWAY
    values["_ResourceId"] = resource_id(name).lower()
    for dim in alert["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]:
        dim["value"] = values.get(dim["name"], dim["value"])
    return json.dumps(alert).encode()


def chain_of(run_id: str, failed: dict[str, tuple[str, str]]) -> str:
    return f"adf|{failed[run_id][0]}|{run_id}"
