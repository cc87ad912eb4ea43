"""--shift-times-to-now: every shape we ingest happens ``shift`` later, nothing else changes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from streams.policy.normalize import NormalizeError, normalize
from streams.policy.normalize_base import time_ms
from streams.policy.retime import shift_times, shift_to_now, shift_value

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
DEMO_ALERTS = Path(__file__).resolve().parents[2] / "pipemedic" / "data" / "demo" / "alerts.jsonl"
SHIFT_MS = 3 * 86_400_000 + 7_000  # three days and seven seconds
RECEIVED_MS = 1_715_090_500_000


def payloads() -> list[tuple[str, bytes]]:
    found = [(path.name, path.read_bytes()) for path in sorted(FIXTURES.glob("*.json"))]
    lines = DEMO_ALERTS.read_text().splitlines()
    found += [(f"demo:{n}", line.encode()) for n, line in enumerate(lines, 1) if line.strip()]
    return found


def alerts(payload: bytes, received_ms: int) -> list[dict]:
    try:
        found = normalize(payload, received_at_ms=received_ms)
    except NormalizeError:
        return []
    return [dataclasses.asdict(a) for a in found]


@pytest.mark.parametrize(("name", "payload"), payloads(), ids=[n for n, _ in payloads()])
def test_every_shape_happens_shift_later_and_is_otherwise_the_same(name: str, payload: bytes):
    before = alerts(payload, RECEIVED_MS)
    after = alerts(shift_times(payload, SHIFT_MS), RECEIVED_MS + SHIFT_MS)
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert new["occurred_at"] == old["occurred_at"] + SHIFT_MS, name
        same = {k for k in old if k not in ("occurred_at", "alert_id", "details")}
        assert {k: new[k] for k in same} == {k: old[k] for k in same}, name
        # the enrichment window the normaliser derived moves with the alert
        windows = {k for k in old["details"] if k.startswith("window_")}
        assert {k: int(new["details"][k]) - int(old["details"][k]) for k in windows} == {
            k: SHIFT_MS for k in windows
        }
        rest = set(old["details"]) - windows
        assert {k: new["details"][k] for k in rest} == {k: old["details"][k] for k in rest}


SHAPES = [
    # (fixture, path to a time in the document): one row per time field of each shape
    ("azure_log_alert_v2.json", "data.essentials.firedDateTime"),
    ("azure_log_alert_v2.json", "data.alertContext.condition.windowStartTime"),
    ("azure_log_alert_v2.json", "data.alertContext.condition.windowEndTime"),
    ("azure_log_alert_legacy.json", "data.essentials.firedDateTime"),
    ("azure_log_alert_legacy.json", "data.alertContext.SearchIntervalStartTimeUtc"),
    ("azure_log_alert_legacy.json", "data.alertContext.SearchIntervalEndtimeUtc"),
    ("azure_metric_pipeline_failed.json", "data.alertContext.condition.windowStartTime"),
    ("azure_metric_resolved.json", "data.essentials.resolvedDateTime"),
    ("adf_diagnostic_mixed_batch.json", "records.0.time"),
    ("adf_diagnostic_mixed_batch.json", "records.1.start"),
    ("adf_diagnostic_mixed_batch.json", "records.1.end"),
    ("adf_diagnostic_activity_retry.json", "records.0.end"),
    ("adf_query_pipeline_runs.json", "value.0.runStart"),
    ("adf_query_pipeline_runs.json", "value.0.runEnd"),
    ("adf_query_pipeline_runs.json", "value.0.lastUpdated"),
    ("databricks_cluster_events.json", "events.0.timestamp"),
    ("databricks_cluster_terminated_launch.json", "cluster.terminated_time"),
    ("databricks_run_get_failed.json", "start_time"),
    ("databricks_run_get_failed.json", "end_time"),
    ("databricks_run_get_failed.json", "tasks.1.end_time"),
]


def dig(doc, path: str):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


@pytest.mark.parametrize(("fixture", "path"), SHAPES)
def test_named_times_move_in_their_own_format(fixture: str, path: str) -> None:
    raw = (FIXTURES / fixture).read_bytes()
    old, new = dig(json.loads(raw), path), dig(json.loads(shift_times(raw, SHIFT_MS)), path)
    assert time_ms(new) == time_ms(old) + SHIFT_MS
    assert type(new) is type(old)
    if isinstance(old, str):  # same format: length, separators, fraction digits and zone
        assert len(new) == len(old) or "/" in old  # the legacy form drops leading zeros
        assert [c for c in new if not c.isdigit()] == [c for c in old if not c.isdigit()]


def test_the_fixtures_times_in_their_formats() -> None:
    shifted = json.loads(shift_times((FIXTURES / "azure_log_alert_v2.json").read_bytes(), SHIFT_MS))
    assert dig(shifted, "data.essentials.firedDateTime") == "2024-05-10T13:58:31.3713213Z"
    legacy = json.loads(
        shift_times((FIXTURES / "azure_log_alert_legacy.json").read_bytes(), SHIFT_MS)
    )
    assert dig(legacy, "data.alertContext.SearchIntervalEndtimeUtc") == "5/10/2024 1:51:38 PM"
    run = json.loads(
        shift_times((FIXTURES / "databricks_run_get_failed.json").read_bytes(), SHIFT_MS)
    )
    assert dig(run, "tasks.1.start_time") == 0  # "not started" stays 0


def test_non_time_fields_and_non_json_are_left_alone() -> None:
    doc = json.loads((FIXTURES / "azure_log_alert_v2.json").read_bytes())
    shifted = json.loads(shift_times(json.dumps(doc).encode(), SHIFT_MS))
    assert dig(shifted, "data.essentials.alertId") == dig(doc, "data.essentials.alertId")
    assert shift_times(b"\x00\xffnot json", SHIFT_MS) == b"\x00\xffnot json"
    assert shift_times(b'{"message": "no times here"}', SHIFT_MS) == b'{"message": "no times here"}'
    assert shift_value("not a time", SHIFT_MS) == "not a time"
    assert shift_value(1715090000, 5000) == 1715090005  # epoch seconds stay seconds
    assert shift_value("1715090000000", 1000) == "1715090001000"


def test_dimensions_and_search_result_columns_name_their_times() -> None:
    doc = {
        "dimensions": [{"name": "TimeGenerated", "value": "2024-05-07T13:40:12.18Z"}],
        "tables": [
            {
                "columns": [{"name": "RunId"}, {"name": "TimeGenerated"}],
                "rows": [["r1", "2024-05-07T13:40:12.18Z"]],
            }
        ],
    }
    shifted = json.loads(shift_times(json.dumps(doc).encode(), 60_000))
    assert shifted["dimensions"][0]["value"] == "2024-05-07T13:41:12.18Z"
    assert shifted["tables"][0]["rows"][0] == ["r1", "2024-05-07T13:41:12.18Z"]


def test_the_shift_ends_the_capture_now_in_whole_seconds() -> None:
    assert shift_to_now([1_000_000, 5_000_500, 0], now_ms=9_000_000) == 3_999_000
    assert shift_to_now([], now_ms=9_000_000) == 0
