"""Bad input on every shape: a NormalizeError with a short reason, never another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.policy.normalize import (
    NormalizeError,
    alerts_from_adf_runs,
    alerts_from_databricks_run,
    normalize,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
NOW = 1_715_090_000_000


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def changed(name: str, change) -> bytes:
    payload = load(name)
    change(payload)
    return json.dumps(payload).encode()


def _set(path: str, value: Any):
    """A change that sets ``a.b.0.c`` to ``value`` (or deletes it when value is ...)."""

    def apply(payload: Any) -> None:
        *parents, last = path.split(".")
        for key in parents:
            payload = payload[int(key)] if isinstance(payload, list) else payload[key]
        last_key = int(last) if isinstance(payload, list) else last
        if value is ...:
            del payload[last_key]
        else:
            payload[last_key] = value

    return apply


METRIC = "azure_metric_pipeline_failed.json"
LOG = "azure_log_alert_v2.json"
BATCH = "adf_diagnostic_mixed_batch.json"
WEBHOOK = "databricks_task_failure_webhook.json"
CLUSTER = "databricks_cluster_terminated_launch.json"
EVENTS = "databricks_cluster_events.json"
LIBRARY = "databricks_library_install_failed.json"
STATUS = "databricks_library_status.json"
DIMS = "data.alertContext.condition.allOf.0.dimensions"


def _records(*records: Any) -> bytes:
    return json.dumps({"records": list(records)}).encode()


def _only_failed_record(change) -> bytes:
    record = load(BATCH)["records"][0]
    change(record)
    return _records(record)


CASES: list[tuple[str, bytes, str]] = [
    # any shape
    ("empty", b"", "not_json"),
    ("truncated", (FIXTURES / METRIC).read_bytes()[:200], "not_json"),
    ("not utf-8", b"\xff\xfe\x00garbage", "not_json"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "not_json"),
    # orjson 3.8 segfaults on this (the process dies): untrusted JSON stays with the stdlib
    ("deeply nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not_json"),
    ("array", b"[1, 2]", "unknown_shape"),
    ("number", b"42", "unknown_shape"),
    ("unknown object", b'{"hello": "world"}', "unknown_shape"),
    ("over 1 MB", b'{"records": [' + b'"x",' * 300_000 + b'"x"]}', "too_large"),
    # common alert schema
    (
        "unknown schemaId",
        changed(METRIC, _set("schemaId", "Microsoft.Insights/activityLogs")),
        "unknown_schema_id",
    ),
    (
        "alert over 256 KB",
        changed(METRIC, _set("data.essentials.description", "x" * 300_000)),
        "too_large",
    ),
    ("data is a list", changed(METRIC, _set("data", [])), "wrong_type:data"),
    ("no alertContext", changed(METRIC, _set("data.alertContext", ...)), "unknown_shape"),
    (
        "allOf is a string",
        changed(METRIC, _set("data.alertContext.condition.allOf", "x")),
        "wrong_type:allOf",
    ),
    (
        "metric on a VM",
        changed(
            METRIC,
            lambda p: p["data"]["essentials"].update(
                alertTargetIDs=[
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
                ],
                configurationItems=["vm"],
            ),
        ),
        "missing_factory",
    ),
    (
        "log alert without ADF facts",
        changed(
            LOG,
            lambda p: (
                p["data"]["essentials"].update(alertTargetIDs=[], configurationItems=[])
                or p["data"]["alertContext"]["condition"]["allOf"][0].update(
                    dimensions=[{"name": "Computer", "value": "vm1"}]
                )
            ),
        ),
        "missing_run_id",
    ),
    ("RunId is an object", changed(LOG, _set(f"{DIMS}.0.value", {"id": 1})), "wrong_type:RunId"),
    ("RunId too long", changed(LOG, _set(f"{DIMS}.0.value", "r" * 300)), "bad_value:RunId"),
    ("dimensions is a number", changed(LOG, _set(DIMS, 7)), "wrong_type:dimensions"),
    (
        "legacy rows is a string",
        changed(
            "azure_log_alert_legacy.json",
            _set("data.alertContext.SearchResults.tables.0.rows", "x"),
        ),
        "wrong_type:rows",
    ),
    (
        "alertContext without shape",
        changed(METRIC, _set("data.alertContext", {"conditionType": "Other"})),
        "unknown_shape",
    ),
    # ADF diagnostic logs
    ("records is an object", b'{"records": {"a": 1}}', "wrong_type:records"),
    ("record is a number", _records(1, 2), "wrong_type:record"),
    (
        "failed record without run id",
        _only_failed_record(_set("pipelineRunId", ...)),
        "missing_run_id",
    ),
    (
        "run id is a list",
        _only_failed_record(_set("pipelineRunId", ["x"])),
        "wrong_type:pipelineRunId",
    ),
    (
        "run id is a bool",
        _only_failed_record(_set("pipelineRunId", True)),
        "wrong_type:pipelineRunId",
    ),
    (
        "properties is a string",
        _only_failed_record(_set("properties", "x")),
        "wrong_type:properties",
    ),
    ("Error is a list", _only_failed_record(_set("properties.Error", [1])), "wrong_type:Error"),
    (
        "pipelineName is an object",
        _only_failed_record(_set("pipelineName", {})),
        "wrong_type:pipelineName",
    ),
    # Databricks webhooks
    ("webhook without run", changed(WEBHOOK, _set("run", ...)), "missing_run_id"),
    ("webhook run is a string", changed(WEBHOOK, _set("run", "x")), "wrong_type:run"),
    ("webhook run id is a float", changed(WEBHOOK, _set("run.run_id", 1.5)), "wrong_type:run_id"),
    (
        "task webhook without parent",
        changed(WEBHOOK, _set("run.parent_run_id", ...)),
        "missing_run_id",
    ),
    ("workspace is a list", changed(WEBHOOK, _set("workspace_id", [1])), "wrong_type:workspace_id"),
    (
        "unknown event type",
        changed(WEBHOOK, _set("event_type", "pipelines.on_failure")),
        "unknown_event_type",
    ),
    (
        "event type is a list",
        changed(WEBHOOK, _set("event_type", ["jobs.on_failure"])),
        "wrong_type:event_type",
    ),
    # Databricks clusters and libraries
    ("cluster without id", changed(CLUSTER, _set("cluster.cluster_id", ...)), "missing_cluster_id"),
    ("cluster is a string", changed(CLUSTER, _set("cluster", "x")), "wrong_type:cluster"),
    (
        "termination reason is a list",
        changed(CLUSTER, _set("cluster.termination_reason", [])),
        "wrong_type:termination_reason",
    ),
    (
        "unknown relayed event",
        changed(CLUSTER, _set("event", "workspace.deleted")),
        "unknown_event_type",
    ),
    ("events is a string", changed(EVENTS, _set("events", "x")), "wrong_type:events"),
    (
        "events without cluster ids",
        changed(EVENTS, lambda p: [e.pop("cluster_id") for e in p["events"]]),
        "missing_cluster_id",
    ),
    ("library event without cluster", changed(LIBRARY, _set("cluster", ...)), "missing_cluster_id"),
    ("library spec is a string", changed(LIBRARY, _set("library", "pandas")), "wrong_type:library"),
    (
        "library statuses all broken",
        changed(STATUS, _set("library_statuses", [1, "x"])),
        "wrong_type:library_statuses[]",
    ),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_normalize_error_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(NormalizeError) as caught:
        normalize(raw, received_at_ms=NOW)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_a_large_diagnostic_batch_under_1_mb_is_fine() -> None:
    record = load(BATCH)["records"][1]
    raw = _records(*[record] * 400)
    assert 256 * 1024 < len(raw) < 1024 * 1024
    assert len(normalize(raw, received_at_ms=NOW)) == 400


def test_raw_must_be_bytes_like() -> None:
    with pytest.raises(NormalizeError) as caught:
        normalize(42, received_at_ms=NOW)  # type: ignore[arg-type]
    assert caught.value.reason == "wrong_type:raw"


def _webhook():
    return normalize((FIXTURES / WEBHOOK).read_bytes(), received_at_ms=NOW)[0]


def _metric():
    return normalize((FIXTURES / METRIC).read_bytes(), received_at_ms=NOW)[0]


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: alerts_from_databricks_run(_webhook(), "x", received_at_ms=NOW), "wrong_type:run"),  # type: ignore[arg-type]
        (
            lambda: alerts_from_databricks_run(
                _webhook(), {"state": [], "run_id": 1}, received_at_ms=NOW
            ),
            "wrong_type:state",
        ),
        (
            lambda: alerts_from_databricks_run(
                _webhook(),
                dict(load("databricks_run_get_failed.json"), tasks="x"),
                received_at_ms=NOW,
            ),
            "wrong_type:tasks",
        ),
        (lambda: alerts_from_adf_runs(_metric(), "abc", received_at_ms=NOW), "wrong_type:runs"),  # type: ignore[arg-type]
        (lambda: alerts_from_adf_runs(_metric(), [1], received_at_ms=NOW), "wrong_type:run"),
        (
            lambda: alerts_from_adf_runs(_metric(), [{"status": "Failed"}], received_at_ms=NOW),
            "missing_run_id",
        ),
    ],
)
def test_enrichment_builders_reject_bad_bodies(build, reason: str) -> None:
    with pytest.raises(NormalizeError) as caught:
        build()
    assert caught.value.reason == reason


def test_a_webhook_alert_without_run_and_a_run_without_id_cannot_be_enriched() -> None:
    from dataclasses import replace

    with pytest.raises(NormalizeError) as caught:
        alerts_from_databricks_run(
            replace(_webhook(), run_id=""), {"state": {}}, received_at_ms=NOW
        )
    assert caught.value.reason == "missing_run_id"
