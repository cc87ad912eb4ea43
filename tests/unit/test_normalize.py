"""Normalisation of every ingest shape, built from the documented samples (platforms.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.policy.model import Alert, Kind, Signal
from streams.policy.normalize import (
    alerts_from_adf_runs,
    alerts_from_databricks_run,
    normalize,
    normalize_detailed,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
NOW = 1_715_090_000_000


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def run(payload: Any, received_at_ms: int = NOW) -> list[Alert]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return normalize(raw, received_at_ms=received_at_ms)


def skips(payload: Any) -> tuple[str, ...]:
    return normalize_detailed(json.dumps(payload).encode(), received_at_ms=NOW).skipped


def ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * 1000)


# ---------------------------------------------------------------- ADF diagnostic logs


def test_mixed_batch_explodes_records_and_keeps_only_what_matters() -> None:
    result = normalize_detailed(
        (FIXTURES / "adf_diagnostic_mixed_batch.json").read_bytes(), received_at_ms=NOW
    )
    activity, pipeline = result.alerts
    assert sorted(result.skipped) == [
        "activity_succeeded",
        "in_progress",
        "in_progress",
        "succeeded_unchained",  # a success in no run group: no chain can wait for it
        "trigger_not_failed",
    ]

    # the trap: properties.Error arrives JSON-encoded as a string
    assert (activity.kind, activity.signal, activity.error_code, activity.failure_type) == (
        Kind.ACTIVITY_RUN.value,
        Signal.FAILURE.value,
        "2200",
        "UserError",
    )
    assert "ErrorCode=UserErrorSourceBlobNotExists" in activity.message
    # run_id is the pipeline run the remediation acts on; sub_id the activity run
    assert (activity.run_id, activity.sub_id) == (
        "16ac5348-ff82-4f95-a80d-638c1d47b721",
        "a96678c8-7167-4f00-b629-afccfbad4e51",
    )
    assert activity.occurred_at == ms("2024-05-07T13:41:01.418892+00:00")
    assert activity.details["activity_name"] == "Copy sales"
    assert activity.details["code_source"] == "adf_error"

    assert (pipeline.kind, pipeline.run_id, pipeline.sub_id, pipeline.error_code) == (
        Kind.PIPELINE_RUN.value,
        activity.run_id,
        "",
        "2200",
    )
    for alert in result.alerts:  # the diagnostic log upper-cases the whole resource id
        assert alert.scope == "myfactoryname"
        assert alert.details.get("resource_group", "myresourcegroup") == "myresourcegroup"


@pytest.mark.parametrize("encode", [json.dumps, lambda error: error], ids=["string", "object"])
def test_error_object_and_json_string_give_the_same_facts(encode) -> None:
    batch = load("adf_diagnostic_mixed_batch.json")
    record = batch["records"][0]
    record["properties"]["Error"] = encode(json.loads(record["properties"]["Error"]))
    (alert, _) = run(batch)
    assert (alert.error_code, alert.failure_type, alert.details["error_target"]) == (
        "2200",
        "UserError",
        "Copy sales",
    )


def test_a_plain_text_error_string_becomes_the_message() -> None:
    batch = {
        "records": [
            dict(
                load("adf_diagnostic_mixed_batch.json")["records"][1],
                properties={"Error": "Operation on target X failed: boom"},
            )
        ]
    }
    (alert,) = run(batch)
    assert (alert.signal, alert.error_code, alert.message) == (
        "failure",
        "",
        "Operation on target X failed: boom",
    )


def test_a_failed_record_without_error_facts_asks_for_enrichment() -> None:
    record = dict(load("adf_diagnostic_mixed_batch.json")["records"][1], properties={})
    (alert,) = run({"records": [record]})
    assert (alert.signal, alert.run_id) == (
        Signal.ENRICH.value,
        "16ac5348-ff82-4f95-a80d-638c1d47b721",
    )


@pytest.mark.parametrize(
    ("status", "end", "reason"),
    [
        ("InProgress", "1601-01-01T00:00:00Z", "in_progress"),
        ("Queued", "1601-01-01T00:00:00Z", "in_progress"),
        (None, "1601-01-01T00:00:00Z", "in_progress"),  # a heartbeat without a status
        ("Cancelled", "2024-05-07T13:41:04Z", "cancelled"),
        ("Weird", "2024-05-07T13:41:04Z", "status_ignored"),
    ],
)
def test_runs_that_are_not_finished_failures_give_nothing(status, end, reason) -> None:
    record = dict(
        load("adf_diagnostic_mixed_batch.json")["records"][1],
        status=status,
        end=end,
        operationName="LoadSales",
    )
    assert skips({"records": [record]}) == (reason,)


def test_status_falls_back_to_the_operation_name() -> None:
    record = dict(load("adf_diagnostic_mixed_batch.json")["records"][1])
    del record["status"]
    (alert,) = run({"records": [record]})  # operationName "LoadSales - Failed"
    assert alert.signal == Signal.FAILURE.value


@pytest.mark.parametrize(
    ("attempt", "retry", "signal", "left"),
    [
        (1, 3, Signal.WAIT, 2),  # ADF will retry by itself
        (None, 1, Signal.WAIT, 1),  # first attempt: retryAttempt is null
        (3, 3, Signal.FAILURE, 0),  # the last attempt failed
        (None, None, Signal.FAILURE, 0),  # no policy facts: act (dedup joins the pipeline failure)
    ],
)
def test_activity_retries_left_means_wait(attempt, retry, signal, left) -> None:
    batch = load("adf_diagnostic_activity_retry.json")
    record = batch["records"][0]
    record["retryAttempt"] = attempt
    if retry is None:
        del record["properties"]["Policy"]
    else:
        record["properties"]["Policy"]["retry"] = retry
    (alert,) = run(batch)
    assert (alert.signal, alert.platform_retries_left) == (signal.value, left)


def test_a_bad_record_does_not_sink_its_neighbours() -> None:
    batch = load("adf_diagnostic_mixed_batch.json")
    del batch["records"][1]["runId"]
    result = normalize_detailed(json.dumps(batch).encode(), received_at_ms=NOW)
    assert len(result.alerts) == 1  # the activity failure; the other success has no chain
    assert "invalid:missing_run_id" in result.skipped


# ---------------------------------------------------------------- Azure Monitor alerts


def test_metric_alert_has_no_run_id_and_asks_for_enrichment_over_its_window() -> None:
    (alert,) = run(load("azure_metric_pipeline_failed.json"))
    assert (
        alert.signal,
        alert.kind,
        alert.run_id,
        alert.scope,
        alert.pipeline,
        alert.failure_type,
    ) == (
        Signal.ENRICH.value,
        Kind.PIPELINE_RUN.value,
        "",
        "myfactoryname",
        "CopySalesToLake",
        "SystemError",
    )
    assert alert.details["window_start_ms"] == str(ms("2024-05-07T13:50:03.064+00:00"))
    assert alert.details["window_end_ms"] == str(ms("2024-05-07T13:55:03.064+00:00"))
    assert alert.details["metric_name"] == "PipelineFailedRuns"
    assert (alert.details["subscription_id"], alert.details["resource_group"]) == (
        "12345678-1234-1234-1234-12345678abc",
        "myresourcegroup",
    )


def test_activity_metric_names_pipeline_and_activity_and_derives_the_window() -> None:
    (alert,) = run(load("azure_metric_activity_failed.json"))
    assert (alert.kind, alert.pipeline, alert.details["activity_name"]) == (
        Kind.ACTIVITY_RUN.value,
        "CopySalesToLake",
        "Copy sales",
    )
    fired = ms("2024-05-07T13:58:24.371321+00:00")
    assert (alert.details["window_start_ms"], alert.details["window_end_ms"]) == (
        str(fired - 5 * 60_000),
        str(fired),
    )


def test_metric_alerts_on_other_metrics_are_ignored() -> None:
    payload = load("azure_metric_pipeline_failed.json")
    payload["data"]["alertContext"]["condition"]["allOf"][0]["metricName"] = "PipelineSucceededRuns"
    assert skips(payload) == ("metric_ignored",)


@pytest.mark.parametrize("name", ["azure_metric_resolved.json"])
def test_a_resolved_alert_is_not_a_failure(name: str) -> None:
    assert skips(load(name)) == ("resolved",)
    assert run(load(name)) == []


def test_log_alert_v2_facts_come_from_dimensions_and_the_factory_from_resource_id() -> None:
    (alert,) = run(load("azure_log_alert_v2.json"))
    assert (alert.signal, alert.kind, alert.run_id, alert.pipeline, alert.error_code) == (
        Signal.FAILURE.value,
        Kind.ACTIVITY_RUN.value,
        "2f7fdb90-5df1-4b8e-ac2f-064cfa58202b",
        "CallPartnerApi",
        "2108",
    )
    assert alert.scope == "myfactoryname"  # the alert target is the Log Analytics workspace
    assert "GatewayTimeout (504)" in alert.message


def test_log_alert_without_message_or_run_id_asks_for_enrichment() -> None:
    payload = load("azure_log_alert_v2.json")
    dims = payload["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]
    dims[:] = [d for d in dims if d["name"] != "ErrorMessage"]
    (alert,) = run(payload)
    assert (alert.signal, alert.run_id, alert.error_code) == (
        Signal.ENRICH.value,
        alert.run_id,
        "2108",
    )
    assert alert.run_id and "window_start_ms" in alert.details
    dims[:] = [d for d in dims if d["name"] != "RunId"]
    (alert,) = run(payload)
    assert (alert.signal, alert.run_id, alert.pipeline) == (
        Signal.ENRICH.value,
        "",
        "CallPartnerApi",
    )


def test_legacy_log_alert_gives_one_alert_per_result_row() -> None:
    first, second = run(load("azure_log_alert_legacy.json"))
    assert (first.run_id, first.error_code, second.run_id, second.error_code) == (
        "16ac5348-ff82-4f95-a80d-638c1d47b721",
        "2200",
        "79c1cc52-265f-41a5-9553-be65e736fbd3",
        "3208",
    )
    assert first.occurred_at == ms("2024-05-07T13:40:12.180+00:00")
    assert {first.scope, second.scope} == {"myfactoryname"}


def test_legacy_rows_that_are_not_failures_are_skipped() -> None:
    payload = load("azure_log_alert_legacy.json")
    payload["data"]["alertContext"]["SearchResults"]["tables"][0]["rows"][1][3] = "Succeeded"
    result = normalize_detailed(json.dumps(payload).encode(), received_at_ms=NOW)
    assert (len(result.alerts), result.skipped) == (1, ("status_ignored",))


def test_legacy_alert_without_rows_asks_for_enrichment_over_its_interval() -> None:
    payload = load("azure_log_alert_legacy.json")
    payload["data"]["essentials"]["alertTargetIDs"] = [
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataFactory/factories/F1"
    ]
    payload["data"]["alertContext"]["SearchResults"]["tables"][0]["rows"] = []
    (alert,) = run(payload)
    assert (alert.signal, alert.scope) == (Signal.ENRICH.value, "f1")
    assert alert.details["window_start_ms"] == str(
        ms("2024-05-07T13:36:31+00:00")
    )  # "5/7/2024 1:36:31 PM"


def test_a_simple_alert_reporting_a_success_is_not_a_failure() -> None:
    payload = load("azure_simple_alert_matrix.json")
    payload["data"]["alertContext"]["properties"]["Status"] = "Succeeded"
    assert skips(payload) == ("status_ignored",)


def test_the_matrix_docs_simple_shape_is_accepted() -> None:
    (alert,) = run(load("azure_simple_alert_matrix.json"))
    assert (alert.signal, alert.run_id, alert.pipeline, alert.error_code, alert.scope) == (
        Signal.FAILURE.value,
        "test-run-retry-001",
        "Test_Retry_Pipeline",
        "GatewayTimeout",
        "",
    )
    assert alert.occurred_at == NOW  # no time in the payload: the receive time


# ---------------------------------------------------------------- Databricks


@pytest.mark.parametrize(
    "name", ["databricks_job_failure_webhook.json", "databricks_task_failure_webhook.json"]
)
def test_failure_webhooks_carry_no_error_detail_and_ask_for_enrichment(name: str) -> None:
    (alert,) = run(load(name))
    assert (alert.signal, alert.scope, alert.run_id, alert.job_id, alert.pipeline) == (
        Signal.ENRICH.value,
        "1234567890123456",
        "455644833",
        "39832",
        "orders_nightly",
    )


def test_a_task_webhook_acts_on_the_parent_run() -> None:
    (alert,) = run(load("databricks_task_failure_webhook.json"))  # ids arrive as numbers here
    assert (alert.kind, alert.run_id, alert.sub_id, alert.details["task_run_id"]) == (
        Kind.TASK_RUN.value,
        "455644833",
        "Orders_Ingest",
        "2112892",
    )


def test_success_webhook_closes_and_start_webhook_is_ignored() -> None:
    (alert,) = run(load("databricks_job_success_webhook.json"))
    assert (alert.signal, alert.kind, alert.run_id) == (
        Signal.SUCCESS.value,
        Kind.JOB_RUN.value,
        "455644833",
    )
    assert skips(load("databricks_job_start_webhook.json")) == ("event_ignored",)


def test_workspace_may_come_as_a_workspace_object() -> None:
    payload = load("databricks_job_failure_webhook.json")
    payload["workspace"] = {"id": 42}
    del payload["workspace_id"]
    assert run(payload)[0].scope == "42"


def test_cluster_termination_keeps_code_type_and_parameters() -> None:
    (alert,) = run(load("databricks_cluster_terminated_launch.json"))
    assert (
        alert.kind,
        alert.cluster_id,
        alert.error_code,
        alert.failure_type,
        alert.occurred_at,
    ) == (
        Kind.CLUSTER.value,
        "0923-164208-meows279",
        "CLOUD_PROVIDER_LAUNCH_FAILURE",
        "CLOUD_FAILURE",
        1715090400123,
    )
    assert alert.details["code_source"] == "termination_reason"
    assert alert.details["param.azure_error_code"] == "SubnetIsFull"
    assert "Subnet" in alert.message  # databricks_error_message joins the state message


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("INACTIVITY", "SUCCESS"),
        ("JOB_FINISHED", "SUCCESS"),
        ("USER_REQUEST", "SUCCESS"),
        ("USER_REQUEST", None),
        ("ANY_CODE", "SUCCESS"),
    ],
)
def test_normal_terminations_are_never_incidents(code, kind) -> None:
    payload = load("databricks_cluster_terminated_inactivity.json")
    payload["cluster"]["termination_reason"] = {"code": code, **({"type": kind} if kind else {})}
    assert skips(payload) == ("normal_termination",)


def test_cluster_events_keep_event_types_apart_from_termination_codes() -> None:
    result = normalize_detailed(
        (FIXTURES / "databricks_cluster_events.json").read_bytes(), received_at_ms=NOW
    )
    event, terminating = result.alerts
    assert result.skipped == ("event_ignored",)  # RUNNING
    assert (event.error_code, event.details["code_source"], event.occurred_at) == (
        "DRIVER_NOT_RESPONDING",
        "cluster_event",
        1715090300000,
    )
    assert (
        terminating.error_code,
        terminating.failure_type,
        terminating.details["code_source"],
    ) == ("DRIVER_UNREACHABLE", "SERVICE_FAULT", "termination_reason")


def test_a_single_relayed_cluster_event_is_accepted() -> None:
    event = load("databricks_cluster_events.json")["events"][1]
    (alert,) = run(dict(event, workspace_id="7"))
    assert (alert.scope, alert.error_code) == ("7", "DRIVER_NOT_RESPONDING")


def test_library_failures_name_the_library() -> None:
    (event,) = run(load("databricks_library_install_failed.json"))
    assert (event.kind, event.library, event.cluster_id, event.details["library_type"]) == (
        Kind.LIBRARY.value,
        "pandas==2.2.0",
        "test-cluster-123",
        "pypi",
    )
    result = normalize_detailed(
        (FIXTURES / "databricks_library_status.json").read_bytes(), received_at_ms=NOW
    )
    (status,) = result.alerts
    assert (status.library, status.details["library_type"], status.cluster_id) == (
        "ada",
        "cran",
        "11203-my-cluster",
    )
    assert status.message.startswith("R package installation is not supported")
    assert result.skipped == ("library_not_failed", "library_not_failed")


# ---------------------------------------------------------------- ids and times


def test_the_same_payload_always_gets_the_same_alert_id() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        raw = path.read_bytes()
        first = normalize_detailed(raw, received_at_ms=NOW) if _ingestible(path) else None
        if first is None:
            continue
        reformatted = json.dumps(json.loads(raw), separators=(",", ":")).encode()
        again = normalize_detailed(reformatted, received_at_ms=NOW + 60_000)
        assert [a.alert_id for a in first.alerts] == [a.alert_id for a in again.alerts], path.name


def _ingestible(path: Path) -> bool:
    return path.name not in ("databricks_run_get_failed.json", "adf_query_pipeline_runs.json")


def test_alert_ids_differ_between_different_failures() -> None:
    ids = [
        a.alert_id
        for path in FIXTURES.glob("*.json")
        if _ingestible(path)
        for a in normalize(path.read_bytes(), received_at_ms=NOW)
    ]
    assert len(ids) == len(set(ids))


def test_the_same_factory_has_the_same_scope_in_every_shape() -> None:
    scopes = {
        a.scope
        for name in (
            "adf_diagnostic_mixed_batch.json",
            "azure_log_alert_v2.json",
            "azure_metric_pipeline_failed.json",
            "azure_log_alert_legacy.json",
        )
        for a in run((FIXTURES / name).read_bytes())
    }
    assert scopes == {"myfactoryname"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-03-22T13:58:24.3713213Z", 1553263104371),
        ("2019-03-22T13:58:24Z", 1553263104000),
        ("2019-03-22T15:58:24+02:00", 1553263104000),
        ("3/22/2019 1:58:24 PM", 1553263104000),
        (1553263104371, 1553263104371),  # epoch ms
        (1553263104, 1553263104000),  # epoch s
        ("not a time", NOW),
        (None, NOW),
    ],
)
def test_times_parse_or_fall_back_to_receipt(value, expected) -> None:
    payload = load("azure_simple_alert_matrix.json")
    payload["data"]["alertContext"]["properties"]["TimeGenerated"] = value
    assert run(payload)[0].occurred_at == expected


def test_bytes_like_and_str_input_and_a_bom_are_accepted() -> None:
    raw = (FIXTURES / "azure_simple_alert_matrix.json").read_bytes()
    expected = normalize(raw, received_at_ms=NOW)
    for variant in (bytearray(raw), memoryview(raw), raw.decode(), b"\xef\xbb\xbf" + raw):
        assert normalize(variant, received_at_ms=NOW) == expected


# ---------------------------------------------------------------- enrichment builders


def _task_webhook() -> Alert:
    return run(load("databricks_task_failure_webhook.json"))[0]


def _runs_get(**changes: Any) -> dict[str, Any]:
    body = load("databricks_run_get_failed.json")
    body.update(changes)
    return body


def test_runs_get_gives_one_failure_per_failed_task_not_for_skipped_ones() -> None:
    webhook = _task_webhook()
    (alert,) = alerts_from_databricks_run(webhook, _runs_get(), received_at_ms=NOW)
    assert (alert.signal, alert.kind, alert.run_id, alert.sub_id, alert.group_id) == (
        Signal.FAILURE.value,
        Kind.TASK_RUN.value,
        "455644833",
        "Orders_Ingest",
        "455644833",
    )
    assert (alert.cluster_id, alert.scope, alert.job_id, alert.occurred_at) == (
        "0923-164208-meows279",
        "1234567890123456",
        "39832",
        1629989930171,
    )
    assert (alert.error_code, alert.details["code_source"], alert.failure_type) == (
        "INTERNAL_ERROR",
        "life_cycle_state",
        "CLIENT_ERROR",
    )
    assert "'Manage' permissions are required" in alert.message
    assert (alert.details["task_run_id"], alert.details["enriched_from"]) == (
        "2112892",
        webhook.alert_id,
    )


def test_runs_get_after_a_job_webhook_reports_every_failed_task() -> None:
    job_webhook = run(load("databricks_job_failure_webhook.json"))[0]
    body = _runs_get()
    body["tasks"][1]["state"] = {
        "life_cycle_state": "TERMINATED",
        "result_state": "FAILED",
        "state_message": "boom",
    }
    alerts = alerts_from_databricks_run(job_webhook, body, received_at_ms=NOW)
    assert [a.sub_id for a in alerts] == ["Orders_Ingest", "Match"]


def test_runs_get_reads_the_latest_attempt_and_the_run_output() -> None:
    body = _runs_get()
    retried = dict(
        body["tasks"][0],
        run_id=2112999,
        attempt_number=1,
        state={"life_cycle_state": "TERMINATED", "result_state": "FAILED", "state_message": "x"},
        status={"termination_details": {"code": "DRIVER_ERROR", "type": "INTERNAL_ERROR"}},
    )
    body["tasks"].append(retried)
    outputs = {
        "2112999": {"error": "java.lang.OutOfMemoryError: Java heap space", "error_trace": "at ..."}
    }
    (alert,) = alerts_from_databricks_run(
        _task_webhook(), body, received_at_ms=NOW, outputs=outputs
    )
    assert (alert.details["task_run_id"], alert.error_code, alert.failure_type) == (
        "2112999",
        "DRIVER_ERROR",
        "INTERNAL_ERROR",
    )
    assert alert.message == "java.lang.OutOfMemoryError: Java heap space\nat ..."


@pytest.mark.parametrize(
    ("state", "signal"),
    [
        ({"life_cycle_state": "RUNNING"}, Signal.WAIT),  # repair is refused while a run is going
        ({"life_cycle_state": "WAITING_FOR_RETRY"}, Signal.WAIT),
        ({"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, Signal.SUCCESS),
    ],
)
def test_runs_get_of_a_run_still_going_or_already_fine(state, signal) -> None:
    body = _runs_get(state=state, status={}, tasks=[])
    (alert,) = alerts_from_databricks_run(_task_webhook(), body, received_at_ms=NOW)
    assert (alert.signal, alert.kind, alert.run_id) == (
        signal.value,
        Kind.JOB_RUN.value,
        "455644833",
    )


@pytest.mark.parametrize(
    "state",
    [
        {"life_cycle_state": "TERMINATED", "result_state": "CANCELED"},
        {"life_cycle_state": "TERMINATED", "result_state": "FAILED", "_code": "USER_CANCELED"},
    ],
)
def test_runs_get_of_a_cancelled_run_gives_nothing(state) -> None:
    code = state.pop("_code", "")
    body = _runs_get(state=state, status={"termination_details": {"code": code}} if code else {})
    assert alerts_from_databricks_run(_task_webhook(), body, received_at_ms=NOW) == []


@pytest.mark.parametrize(
    ("max_retries", "attempt", "signal", "left"),
    [
        (3, 1, Signal.WAIT, 2),
        (-1, 5, Signal.WAIT, -1),
        (1, 1, Signal.FAILURE, 0),
        (None, 0, Signal.FAILURE, 0),
    ],
)
def test_task_retries_left_mean_wait_while_the_run_may_still_retry(
    max_retries, attempt, signal, left
) -> None:
    body = _runs_get(state={"result_state": "FAILED"}, status={})  # life cycle not reported
    task = body["tasks"][0]
    task.update(attempt_number=attempt, max_retries=max_retries)
    (alert,) = alerts_from_databricks_run(_task_webhook(), body, received_at_ms=NOW)
    assert (alert.signal, alert.platform_retries_left) == (signal.value, left)
    body["state"]["life_cycle_state"] = "TERMINATED"  # nothing retries a terminated run
    (alert,) = alerts_from_databricks_run(_task_webhook(), body, received_at_ms=NOW)
    assert alert.signal == Signal.FAILURE.value


def test_a_timed_out_task_says_so_in_its_code() -> None:
    body = _runs_get()
    body["tasks"][0]["state"] = {
        "life_cycle_state": "TERMINATED",
        "result_state": "TIMEDOUT",
        "state_message": "",
    }
    (alert,) = alerts_from_databricks_run(_task_webhook(), body, received_at_ms=NOW)
    assert (alert.error_code, alert.details["code_source"]) == ("TIMEDOUT", "result_state")


def test_adf_runs_give_one_failure_per_latest_failed_run() -> None:
    metric = run(load("azure_metric_pipeline_failed.json"))[0]
    (alert,) = alerts_from_adf_runs(
        metric, load("adf_query_pipeline_runs.json")["value"], received_at_ms=NOW
    )
    assert (
        alert.signal,
        alert.kind,
        alert.scope,
        alert.run_id,
        alert.group_id,
        alert.pipeline,
    ) == (
        Signal.FAILURE.value,
        Kind.PIPELINE_RUN.value,
        "myfactoryname",
        "16ac5348-ff82-4f95-a80d-638c1d47b721",
        "16ac5348-ff82-4f95-a80d-638c1d47b721",
        "CopySalesToLake",
    )
    assert (
        "HttpStatusCode : 429" in alert.message and alert.details["activity_name"] == "Call partner"
    )
    assert alert.occurred_at == ms("2024-05-07T13:52:12.731450+00:00")
    # the raw response body works too
    assert alerts_from_adf_runs(
        metric, load("adf_query_pipeline_runs.json"), received_at_ms=NOW
    ) == [alert]


def test_adf_runs_skip_other_pipelines_and_keep_the_named_runs_facts() -> None:
    metric = run(load("azure_metric_pipeline_failed.json"))[0]
    other = dict(load("adf_query_pipeline_runs.json")["value"][0], pipelineName="Other")
    assert alerts_from_adf_runs(metric, [other], received_at_ms=NOW) == []

    log_alert = load("azure_log_alert_v2.json")
    dims = log_alert["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]
    dims[:] = [d for d in dims if d["name"] != "ErrorMessage"] + [
        {"name": "ActivityRunId", "value": "act-1"}
    ]
    (enrich,) = run(log_alert)
    named = dict(
        load("adf_query_pipeline_runs.json")["value"][0],
        runId=enrich.run_id,
        pipelineName="CallPartnerApi",
    )
    (alert,) = alerts_from_adf_runs(enrich, [named], received_at_ms=NOW)
    assert (alert.kind, alert.sub_id, alert.error_code, alert.signal) == (
        Kind.ACTIVITY_RUN.value,
        "act-1",
        "2108",
        Signal.FAILURE.value,
    )


def test_a_success_of_a_rerun_is_kept_for_the_chain_of_the_run_it_reran() -> None:
    batch = load("adf_diagnostic_mixed_batch.json")
    success = next(r for r in batch["records"] if r.get("status") == "Succeeded" and "runId" in r)
    rerun = dict(success, groupId="16ac5348-ff82-4f95-a80d-638c1d47b721")
    [alert] = normalize(json.dumps({"records": [rerun]}).encode(), received_at_ms=NOW)
    assert (alert.signal, alert.run_id, alert.group_id) == (
        Signal.SUCCESS.value,
        "2f7fdb90-5df1-4b8e-ac2f-064cfa58202b",
        "16ac5348-ff82-4f95-a80d-638c1d47b721",
    )
