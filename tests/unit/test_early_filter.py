"""The early filter of ADF diagnostic batches never drops a failure.

Ingest passes over what can never need action (queued, in-progress and cancelled runs,
activity successes, trigger runs that did not fail, other categories) before any canonical
record is built. Over generated batches of records of every category and status, in the
documented shapes (status as a field or only in ``operationName``), every failed pipeline,
activity or trigger run still yields exactly one alert that is not a success, and nothing
else does.
"""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.policy.model import Kind, Signal
from streams.policy.normalize import normalize_detailed

RESOURCE = (
    "/SUBSCRIPTIONS/12345678-1234-1234-1234-123456789ABC/RESOURCEGROUPS/RG"
    "/PROVIDERS/MICROSOFT.DATAFACTORY/FACTORIES/F1"
)
CATEGORIES = (
    "PipelineRuns",
    "ActivityRuns",
    "TriggerRuns",
    "SandboxPipelineRuns",
    "SSISIntegrationRuntimeLogs",
)
STATUSES = ("Queued", "InProgress", "Succeeded", "Failed", "Cancelled", "Cancelling", "Timeout")
FAILED_KINDS = {
    "PipelineRuns": Kind.PIPELINE_RUN.value,
    "ActivityRuns": Kind.ACTIVITY_RUN.value,
    "TriggerRuns": Kind.TRIGGER_RUN.value,
}


@st.composite
def records(draw) -> dict:
    category = draw(st.sampled_from(CATEGORIES))
    status = draw(st.sampled_from(STATUSES))
    run_id = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    record = {
        "category": category,
        "resourceId": RESOURCE,
        "time": "2024-05-07T13:40:44.0000000Z",
        "operationName": f"thing - {status}",
        "properties": {},
    }
    if draw(st.booleans()):  # otherwise only the operation name says it
        record["status"] = status
    if category == "TriggerRuns":
        record |= {"triggerId": run_id.replace("-", "")[:20], "triggerName": "daily"}
    elif category == "ActivityRuns":
        record |= {"pipelineRunId": run_id, "activityRunId": str(uuid.uuid4()), "pipelineName": "P"}
    else:
        record |= {"runId": run_id, "pipelineName": "P", "groupId": run_id}
    if status == "Failed" and draw(st.booleans()):  # a failure says why, or leaves it to enrich
        record["properties"]["Error"] = {"errorCode": "2108", "message": "Gateway timeout"}
    return record


def _failed(record: dict) -> bool:
    return record.get("status", record["operationName"].rsplit(" - ", 1)[1]) == "Failed"


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), min_size=1, max_size=20))
def test_every_failed_run_yields_one_alert_and_nothing_else_does(batch: list[dict]) -> None:
    result = normalize_detailed(json.dumps({"records": batch}).encode(), received_at_ms=1)
    not_success = [a for a in result.alerts if a.signal != Signal.SUCCESS.value]
    failed = [r for r in batch if _failed(r) and r["category"] in FAILED_KINDS]
    assert len(not_success) == len(failed)
    assert sorted(a.kind for a in not_success) == sorted(
        FAILED_KINDS[r["category"]] for r in failed
    )
    # everything else was passed over with a reason (or closes a chain: a pipeline success)
    successes = [a for a in result.alerts if a.signal == Signal.SUCCESS.value]
    assert len(result.skipped) + len(successes) + len(not_success) == len(batch)
