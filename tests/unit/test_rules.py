"""The rule table, row by row: a payload in the platform's real shape goes through
normalize (or an enrichment builder) and classify, and must land on the expected row."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.policy.model import Action, Alert, Kind, Signal, Source
from streams.policy.normalize import alerts_from_databricks_run, normalize, unmatched_alert
from streams.policy.root_cause import trimmed_output
from streams.policy.rules import DEFAULT_RULES, DEFAULT_SCHEDULES, Rule, classify
from streams.policy.tables import with_table_facts

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
NOW = 1_715_090_000_000
FACTORY_ID = (
    "/SUBSCRIPTIONS/12345678-1234-1234-1234-12345678ABC/RESOURCEGROUPS/MYRESOURCEGROUP"
    "/PROVIDERS/MICROSOFT.DATAFACTORY/FACTORIES/MYFACTORYNAME"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# ---------------------------------------------------------------- real-shape builders


def adf_trigger_failed() -> list[Alert]:
    """The mixed batch's ScheduleTrigger run, failed (TriggerRuns records, same shape)."""
    batch = json.loads(fixture("adf_diagnostic_mixed_batch.json"))
    (record,) = (r for r in batch["records"] if r["category"] == "TriggerRuns")
    record |= {"status": "Failed", "operationName": "daily - Failed"}
    return normalize(json.dumps({"records": [record]}).encode(), received_at_ms=NOW)


def adf_activity(code: str, message: str, failure_type: str = "UserError") -> list[Alert]:
    """A failed ActivityRuns diagnostic record, Error JSON-encoded as Event Hubs sends it."""
    error = {"errorCode": code, "message": message, "failureType": failure_type, "target": "Copy"}
    record = {
        "time": "2024-05-07T13:41:02.1234567Z",
        "activityRunId": "a96678c8-7167-4f00-b629-afccfbad4e51",
        "pipelineRunId": "16ac5348-ff82-4f95-a80d-638c1d47b721",
        "resourceId": FACTORY_ID,
        "category": "ActivityRuns",
        "level": "Error",
        "operationName": "Copy - Failed",
        "pipelineName": "LoadSales",
        "activityName": "Copy",
        "start": "2024-05-07T13:40:50Z",
        "end": "2024-05-07T13:41:01Z",
        "status": "Failed",
        "properties": {"Input": "{}", "Output": "{}", "Error": json.dumps(error)},
    }
    return normalize(json.dumps({"records": [record]}).encode(), received_at_ms=NOW)


def cluster_terminated(code: str, kind: str | None, message: str = "") -> list[Alert]:
    reason = {"code": code, **({"type": kind} if kind else {})}
    payload = {
        "event": "cluster.terminated",
        "workspace_id": "1234567890123456",
        "cluster": {
            "cluster_id": "0923-164208-meows279",
            "state": "TERMINATED",
            "state_message": message,
            "termination_reason": reason,
        },
    }
    return normalize(json.dumps(payload).encode(), received_at_ms=NOW)


def _webhook() -> Alert:
    return normalize(fixture("databricks_job_failure_webhook.json"), received_at_ms=NOW)[0]


def job_run(
    code: str = "",
    kind: str = "",
    *,
    result: str = "FAILED",
    message: str = "",
    task_state: dict | None = None,
) -> list[Alert]:
    """A ``jobs/runs/get`` body for the failure webhook, with one task when ``task_state``."""
    details = {k: v for k, v in (("code", code), ("type", kind)) if v}
    run = {
        "job_id": 39832,
        "run_id": 455644833,
        "original_attempt_run_id": 455644833,
        "run_name": "orders_nightly",
        "end_time": 1715090100000,
        "cluster_instance": {"cluster_id": "0923-164208-meows279"},
        "state": {
            "life_cycle_state": "TERMINATED",
            "result_state": result,
            "state_message": message,
        },
        "status": {"state": "TERMINATED", "termination_details": details},
        "tasks": [],
    }
    if task_state is not None:
        run["tasks"] = [
            {
                "task_key": "ingest",
                "run_id": 2112892,
                "attempt_number": 0,
                "end_time": 1715090099000,
                "state": task_state,
            }
        ]
    return alerts_from_databricks_run(_webhook(), run, received_at_ms=NOW)


def task_failed(message: str, result: str = "FAILED") -> list[Alert]:
    return job_run(
        "RUN_EXECUTION_ERROR",
        "CLIENT_ERROR",
        task_state={
            "life_cycle_state": "TERMINATED",
            "result_state": result,
            "state_message": message,
        },
    )


def task_output(error: str, trace: str = "", *, ddl_for: tuple[str, ...] = ()) -> list[Alert]:
    """A run whose failed task says only "Task ingest failed"; the real error is in its
    ``runs/get-output`` (documented shape: ``metadata``, ``error``, ``error_trace``), trimmed
    as enrichment keeps it. ``ddl_for``: tables the estate holds a DDL for."""
    webhook = _webhook()
    task = {
        "task_key": "ingest",
        "run_id": 2112892,
        "attempt_number": 0,
        "end_time": 1715090099000,
        "state": {
            "life_cycle_state": "TERMINATED",
            "result_state": "FAILED",
            "state_message": "Task ingest failed with message: Workload failed, see run output for details.",
        },
    }
    run = {
        "job_id": 39832,
        "run_id": 455644833,
        "run_name": "orders_nightly",
        "end_time": 1715090100000,
        "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
        "status": {
            "state": "TERMINATED",
            "termination_details": {"code": "RUN_EXECUTION_ERROR", "type": "CLIENT_ERROR"},
        },
        "tasks": [task],
    }
    output = {"metadata": {**task, "job_id": 39832}, "error": error}
    if trace:
        output["error_trace"] = trace
    found = alerts_from_databricks_run(
        webhook, run, received_at_ms=NOW, outputs={"2112892": trimmed_output(output)}
    )
    return [with_table_facts(alert, ddl_for) for alert in found]


OOM_LOST = (
    "org.apache.spark.SparkException: Job aborted due to stage failure: Task 2 in stage 7.0 "
    "failed 4 times, most recent failure: Lost task 2.3 in stage 7.0 (TID 88) (10.139.64.5 "
    "executor 3): ExecutorLostFailure (executor 3 exited caused by one of the running tasks) "
    "Reason: Command exited with code 137"
)
FETCH_FAILED = (
    "org.apache.spark.shuffle.FetchFailedException: Failed to connect to /10.139.64.7:4048",
    "org.apache.spark.shuffle.FetchFailedException: Failed to connect to /10.139.64.7:4048\n"
    "\tat org.apache.spark.storage.ShuffleBlockFetcherIterator.throwFetchFailedException\n"
    "Caused by: java.io.IOException: Connection reset by peer",
)
STORAGE_503 = (
    "shaded.databricks.azurebfs.org.apache.hadoop.fs.azurebfs.contracts.exceptions."
    'AbfsRestOperationException: Operation failed: "The server is busy.", 503, PUT, '
    "https://lake.dfs.core.windows.net/raw/orders/part-0001.parquet?action=flush"
)
PYTHON_ERROR = (
    "ZeroDivisionError: division by zero",
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m\n"
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)\n"
    "File \x1b[0;32m<command-4412>:3\x1b[0m\n----> 3 ratio = total / count\n"
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
)


def simple_alert(code: str, message: str) -> list[Alert]:
    payload = {
        "data": {
            "essentials": {"alertRule": "r"},
            "alertContext": {
                "properties": {
                    "PipelineName": "p",
                    "PipelineRunId": "run-1",
                    "ErrorCode": code,
                    "ErrorMessage": message,
                }
            },
        }
    }
    return normalize(json.dumps(payload).encode(), received_at_ms=NOW)


def from_fixture(name: str) -> Callable[[], list[Alert]]:
    return lambda: normalize(fixture(name), received_at_ms=NOW)


def run_fixture() -> list[Alert]:
    webhook = normalize(fixture("databricks_task_failure_webhook.json"), received_at_ms=NOW)[0]
    run = json.loads(fixture("databricks_run_get_failed.json"))
    return alerts_from_databricks_run(webhook, run, received_at_ms=NOW)


# rule, payload, expected error type, expected action
# one row per rule case, kept on one line each so the table reads as a table
# fmt: off
CASES: list[tuple[str, Callable[[], list[Alert]], str, Action]] = [
    ("adf-token-expired", lambda: adf_activity("3200", "Error 403. The Databricks access token has expired."), "AuthenticationError", Action.MANUAL),
    ("adf-credential-invalid", lambda: adf_activity("4121", "Request sent to Azure Machine Learning failed: the credential used has expired."), "AuthenticationError", Action.MANUAL),
    ("adf-auth", lambda: adf_activity("2200", "ErrorCode=SqlFailedToConnect,'Message=Login failed for user 'etl'.'"), "AuthenticationError", Action.MANUAL),
    ("adf-auth", lambda: adf_activity("2108", "Error calling the endpoint 'https://x'. Response status code: 'ClientError (403)'. timeout"), "AuthenticationError", Action.MANUAL),
    ("dbx-permission-code", lambda: job_run("UNAUTHORIZED_ERROR", "CLIENT_ERROR"), "DatabricksPermissionDenied", Action.MANUAL),
    ("dbx-permission", run_fixture, "DatabricksPermissionDenied", Action.MANUAL),
    ("dbx-misconfig", lambda: cluster_terminated("BOOTSTRAP_TIMEOUT_DUE_TO_MISCONFIG", "CLOUD_FAILURE"), "DatabricksClusterStartFailure", Action.MANUAL),
    ("adf-authoring", lambda: adf_activity("2105", "An invalid json is provided for property 'body'."), "ConfigurationError", Action.MANUAL),
    ("dbx-configuration", lambda: cluster_terminated("INIT_SCRIPT_FAILURE", "CLIENT_ERROR", "Init script failure: exit code 1"), "ConfigurationError", Action.MANUAL),
    ("adf-column", lambda: adf_activity("2200", "Failure happened on 'Sink' side. ErrorCode=SqlOperationFailed,'Message=Invalid column name 'amount_eur'.'"), "UserErrorColumnNameInvalid", Action.MANUAL),
    ("adf-column", lambda: simple_alert("UserErrorColumnNameInvalid", "The column name is invalid."), "UserErrorColumnNameInvalid", Action.MANUAL),
    ("schema-mismatch", lambda: task_failed("AnalysisException: [DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields 'id' and 'id'"), "SchemaMismatchError", Action.MANUAL),
    ("schema-mismatch", lambda: adf_activity("2200", "ErrorCode=UserErrorSchemaMappingCannotInferSink,'Message=Cannot infer sink schema.'"), "SchemaMismatchError", Action.MANUAL),
    ("adf-data-type", lambda: adf_activity("2200", "ErrorCode=TypeConversionFailure,Exception occurred when converting value 'abc' for column name 'qty' from type 'String' to type 'Int32'."), "UserErrorInvalidDataType", Action.MANUAL),
    ("data-integrity", lambda: adf_activity("2200", "Violation of PRIMARY KEY constraint 'PK_orders'. Cannot insert duplicate key in object 'dbo.orders'."), "DataIntegrityError", Action.MANUAL),
    ("data-integrity", lambda: task_failed("[DELTA_VIOLATE_CONSTRAINT_WITH_VALUES] CHECK constraint amount_positive violated by row"), "DataIntegrityError", Action.MANUAL),
    ("dbx-table-create", lambda: task_output("[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`orders` cannot be found. Verify the spelling and correctness of the schema and catalog.", ddl_for=("main.sales.orders",)), "DatabricksTableNotFound", Action.CREATE_TABLE),
    ("dbx-table-missing", lambda: task_failed("[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`orders` cannot be found."), "DatabricksTableNotFound", Action.MANUAL),
    ("dbx-table-missing", lambda: task_output("[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`orders` cannot be found.", ddl_for=("main.sales.customers",)), "DatabricksTableNotFound", Action.MANUAL),
    ("adf-source-missing", from_fixture("adf_diagnostic_mixed_batch.json"), "UserErrorSourceBlobNotExists", Action.UPSTREAM_CHECK),
    ("adf-source-missing", lambda: simple_alert("UserErrorSourceBlobNotExists", "The required Blob is missing."), "UserErrorSourceBlobNotExists", Action.UPSTREAM_CHECK),
    ("dbx-library-cluster", from_fixture("databricks_library_install_failed.json"), "LibraryInstallFailed", Action.LIBRARY_FALLBACK),
    ("dbx-library-cluster", from_fixture("databricks_library_status.json"), "LibraryInstallFailed", Action.LIBRARY_FALLBACK),
    ("dbx-library-run", lambda: job_run("LIBRARY_INSTALLATION_ERROR", "CLIENT_ERROR", message="Could not find a version that satisfies the requirement foo==9.9"), "DatabricksLibraryInstallationError", Action.LIBRARY_FALLBACK),
    ("dbx-out-of-memory", lambda: cluster_terminated("DRIVER_OUT_OF_MEMORY", "CLIENT_ERROR"), "DatabricksResourceExhausted", Action.SCALE_CLUSTER),
    ("dbx-out-of-memory", lambda: task_failed("java.lang.OutOfMemoryError: Java heap space"), "DatabricksResourceExhausted", Action.SCALE_CLUSTER),
    # the real error only in runs/get-output: out of memory, executor lost, GC overhead -> scale
    ("dbx-out-of-memory", lambda: task_output(OOM_LOST), "DatabricksResourceExhausted", Action.SCALE_CLUSTER),
    ("dbx-out-of-memory", lambda: task_output("java.lang.OutOfMemoryError: GC overhead limit exceeded", "java.lang.OutOfMemoryError: GC overhead limit exceeded\n\tat java.util.Arrays.copyOf(Arrays.java:3332)"), "DatabricksResourceExhausted", Action.SCALE_CLUSTER),
    # code and data errors -> people, with the first lines of the trace
    ("dbx-code-error", lambda: task_output("org.apache.spark.SparkException: Job aborted due to stage failure: java.lang.ArithmeticException: / by zero"), "DatabricksJobExecutionError", Action.MANUAL),
    ("dbx-code-error", lambda: task_output("pyspark.errors.exceptions.captured.AnalysisException: [UNRESOLVED_ROUTINE] Cannot resolve function `normalise_sku` on search path [`system`.`builtin`]."), "DatabricksJobExecutionError", Action.MANUAL),
    ("dbx-code-error", lambda: task_output("java.lang.NullPointerException", "java.lang.NullPointerException\n\tat com.acme.orders.Enrich.apply(Enrich.scala:42)"), "DatabricksJobExecutionError", Action.MANUAL),
    ("dbx-code-error", lambda: task_output(*PYTHON_ERROR), "DatabricksJobExecutionError", Action.MANUAL),
    ("dbx-code-error", lambda: task_output("AssertionError: expected 1200 rows in orders_daily, found 0"), "DatabricksJobExecutionError", Action.MANUAL),
    ("dbx-quota-cluster", lambda: cluster_terminated("AZURE_QUOTA_EXCEEDED_EXCEPTION", "CLIENT_ERROR"), "ThrottlingError", Action.RESTART_CLUSTER),
    ("dbx-quota-run", lambda: job_run("CLUSTER_REQUEST_LIMIT_EXCEEDED", "CLIENT_ERROR"), "ThrottlingError", Action.REPAIR_JOB),
    ("dbx-driver-event", from_fixture("databricks_cluster_events.json"), "DatabricksDriverNotResponding", Action.RESTART_CLUSTER),
    ("dbx-driver-terminated", lambda: cluster_terminated("DRIVER_UNRESPONSIVE", "SERVICE_FAULT"), "DatabricksDriverNotResponding", Action.RESTART_CLUSTER),
    ("dbx-driver-message", from_fixture("databricks_cluster_terminated_matrix.json"), "DatabricksDriverNotResponding", Action.RESTART_CLUSTER),
    ("dbx-driver-run", lambda: job_run("DRIVER_ERROR", "INTERNAL_ERROR"), "DatabricksDriverNotResponding", Action.REPAIR_JOB),
    ("dbx-start-failure", from_fixture("databricks_cluster_terminated_launch.json"), "DatabricksClusterStartFailure", Action.RESTART_CLUSTER),
    ("dbx-cluster-lost", lambda: cluster_terminated("COMMUNICATION_LOST", None), "ClusterUnexpectedTermination", Action.RESTART_CLUSTER),
    ("dbx-timeout", lambda: task_failed("Run timed out", result="TIMEDOUT"), "DatabricksTimeoutError", Action.REPAIR_JOB),
    ("dbx-spark-transient", lambda: task_failed("org.apache.spark.SparkException: Job aborted due to stage failure: org.apache.spark.shuffle.FetchFailedException"), "DatabricksSparkException", Action.REPAIR_JOB),
    # transient cloud, storage or network errors in the output -> repair
    ("dbx-spark-transient", lambda: task_output(*FETCH_FAILED), "DatabricksSparkException", Action.REPAIR_JOB),
    ("dbx-spark-transient", lambda: task_output(STORAGE_503), "DatabricksSparkException", Action.REPAIR_JOB),
    ("dbx-spark", lambda: task_failed("org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 4 times"), "DatabricksSparkException", Action.MANUAL),
    ("dbx-run-platform", lambda: job_run("CLOUD_FAILURE", "CLOUD_FAILURE"), "DatabricksJobExecutionError", Action.REPAIR_JOB),
    ("dbx-run-platform-type", lambda: job_run("", "INTERNAL_ERROR"), "DatabricksJobExecutionError", Action.REPAIR_JOB),
    ("dbx-run-user", lambda: job_run("RUN_EXECUTION_ERROR", "", message="Workload failed, see run output for details"), "DatabricksJobExecutionError", Action.MANUAL),
    ("dbx-run-client", lambda: job_run("", "CLIENT_ERROR", result="SUCCESS_WITH_FAILURES"), "DatabricksJobExecutionError", Action.MANUAL),
    ("dbx-cluster-platform", lambda: cluster_terminated("UNEXPECTED_POD_RECREATION", "SERVICE_FAULT"), "ClusterUnexpectedTermination", Action.RESTART_CLUSTER),
    ("dbx-cluster-client", lambda: cluster_terminated("DRIVER_OUT_OF_DISK", "CLIENT_ERROR"), "ConfigurationError", Action.MANUAL),
    ("adf-throttled", lambda: adf_activity("3202", "There were already 1000 jobs created in past 3600 seconds, exceeding rate limit: 1000 job creations per 3600 seconds.", "SystemError"), "ThrottlingError", Action.RETRY_PIPELINE),
    ("adf-cluster-terminated", lambda: adf_activity("3203", "The cluster is in Terminated state, not available to receive jobs. Please fix the cluster or retry later."), "ClusterUnexpectedTermination", Action.RESTART_CLUSTER),
    ("adf-databricks-network", lambda: adf_activity("3208", "An error occurred while sending the request.", "SystemError"), "HttpConnectionFailed", Action.RETRY_PIPELINE),
    ("adf-no-response", lambda: adf_activity("2128", "No response from the endpoint. Possible causes: network connectivity, DNS failure, server certificate validation or timeout."), "HttpConnectionFailed", Action.RETRY_PIPELINE),
    ("http-throttled", lambda: adf_activity("2108", "Error calling the endpoint 'https://x'. Response status code: 'ClientSideException HttpStatusCode : 429, HttpStatusString: TooManyRequests'"), "ThrottlingError", Action.RETRY_PIPELINE),
    ("http-throttled", lambda: simple_alert("ThrottlingError", "Retry-After: 30"), "ThrottlingError", Action.RETRY_PIPELINE),
    ("http-gateway", from_fixture("azure_log_alert_v2.json"), "GatewayTimeout", Action.RETRY_PIPELINE),
    ("http-gateway", from_fixture("azure_simple_alert_matrix.json"), "GatewayTimeout", Action.RETRY_PIPELINE),
    ("http-gateway", lambda: adf_activity("2108", "Error calling the endpoint 'https://x'. Response status code: 'BadGateway (502)'"), "GatewayTimeout", Action.RETRY_PIPELINE),
    ("http-server-error", lambda: adf_activity("2108", "Error calling the endpoint 'https://x'. Response status code: 'ServerError (500)'."), "InternalServerError", Action.RETRY_PIPELINE),
    ("http-server-error", lambda: adf_activity("3608", "Call to provided Azure function 'f' failed with status-'InternalServerError' and message - 'boom'."), "InternalServerError", Action.RETRY_PIPELINE),
    ("http-connection", lambda: adf_activity("2200", "ErrorCode=SqlFailedToConnect,'Message=A network-related error occurred (provider: TCP Provider, error: 0 - No such host is known.)'"), "HttpConnectionFailed", Action.RETRY_PIPELINE),
    ("http-connection", lambda: simple_alert("HttpConnectionFailed", "Connection reset by peer"), "HttpConnectionFailed", Action.RETRY_PIPELINE),
    ("adf-timeout", lambda: adf_activity("2200", "Failure happened on 'Source' side. The operation has timed out."), "GatewayTimeout", Action.RETRY_PIPELINE),
    ("adf-transient-codes", lambda: adf_activity("2303", "Hadoop job failed with transient exit code '1'.", "SystemError"), "InternalServerError", Action.RETRY_PIPELINE),
    ("adf-databricks-job", lambda: adf_activity("3204", "Job execution failed."), "DatabricksJobExecutionError", Action.MANUAL),
    ("adf-system-error", lambda: adf_activity("2011", "The activity failed because of a system issue.", "SystemError"), "InternalServerError", Action.RETRY_PIPELINE),
    ("adf-trigger-failed", adf_trigger_failed, "TriggerRunFailed", Action.MANUAL),
    ("unmatched", lambda: [unmatched_alert(Alert("m1", "adf", "pipeline_run", scope="f", pipeline="Nightly"), NOW - 900_000, NOW)], "Unmatched", Action.MANUAL),
    ("unknown", lambda: adf_activity("2011", "Something odd happened."), "Unknown", Action.MANUAL),
    ("unknown", lambda: cluster_terminated("DRIVER_NOT_RESPONDING", "ERROR"), "Unknown", Action.MANUAL),
]
# fmt: on


@pytest.mark.parametrize(
    ("rule", "make", "error_type", "action"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_real_payload_lands_on_its_rule(rule: str, make, error_type: str, action: Action) -> None:
    failures = [a for a in make() if a.signal == Signal.FAILURE.value]
    assert failures, "the payload must yield a failure"
    result = classify(failures[0])
    assert (result.reason.split(" ")[0], result.error_type, result.action) == (
        f"rule:{rule}",
        error_type,
        action.value,
    )
    if action is Action.MANUAL:
        assert (result.max_retries, result.backoff_s) == (0, ())
    else:
        assert result.max_retries == len(result.backoff_s) > 0


def test_every_rule_has_a_real_payload_case() -> None:
    assert {rule.name for rule in DEFAULT_RULES} == {case[0] for case in CASES}


MATRIX = {  # the user's remediation matrix: 8 ADF + 11 Databricks error types
    "UserErrorSourceBlobNotExists",
    "GatewayTimeout",
    "HttpConnectionFailed",
    "ThrottlingError",
    "UserErrorInvalidDataType",
    "UserErrorColumnNameInvalid",
    "AuthenticationError",
    "InternalServerError",
    "DatabricksClusterStartFailure",
    "DatabricksJobExecutionError",
    "DatabricksLibraryInstallationError",
    "DatabricksPermissionDenied",
    "DatabricksResourceExhausted",
    "DatabricksTableNotFound",
    "DatabricksDriverNotResponding",
    "DatabricksSparkException",
    "DatabricksTimeoutError",
    "ClusterUnexpectedTermination",
    "LibraryInstallFailed",
}


def test_every_matrix_error_type_is_reached_by_a_case() -> None:
    assert {case[2] for case in CASES} >= MATRIX


@pytest.mark.parametrize(
    ("error_type", "backoff"),
    [
        ("GatewayTimeout", (10, 30, 60)),
        ("HttpConnectionFailed", (5, 15, 30)),
        ("ThrottlingError", (30, 60, 120, 300, 600)),
        ("InternalServerError", (30, 60)),
        ("DatabricksClusterStartFailure", (60, 120)),
        ("DatabricksTimeoutError", (30, 60)),
        ("DatabricksDriverNotResponding", (60,)),
    ],
)
def test_matrix_seed_schedules(error_type: str, backoff: tuple[int, ...]) -> None:
    assert DEFAULT_SCHEDULES[error_type] == backoff


@pytest.mark.parametrize(
    "error_type",
    [
        "UserErrorColumnNameInvalid",
        "DatabricksPermissionDenied",
        "DataIntegrityError",
        "SchemaMismatchError",
        "AuthenticationError",
        "Unknown",
    ],
)
def test_never_automate_list_is_manual_in_every_row(error_type: str) -> None:
    rows = [rule for rule in DEFAULT_RULES if rule.error_type == error_type]
    assert rows and all(rule.action is Action.MANUAL for rule in rows)


def test_every_acting_row_has_a_schedule_and_delays_reuse_the_seed_tiers() -> None:
    seed_tiers = {5, 10, 15, 30, 60, 120, 300, 600}
    for rule in DEFAULT_RULES:
        if rule.action is not Action.MANUAL:
            assert DEFAULT_SCHEDULES[rule.schedule or rule.error_type], rule.name
    assert {d for delays in DEFAULT_SCHEDULES.values() for d in delays} <= seed_tiers


def test_rule_names_are_unique_and_unknown_is_last_and_unconditional() -> None:
    names = [rule.name for rule in DEFAULT_RULES]
    assert len(names) == len(set(names))
    assert DEFAULT_RULES[-1].describe() == "always"


def _alert(**fields) -> Alert:
    return Alert(
        alert_id="a",
        source=fields.pop("source", Source.DATABRICKS.value),
        kind=fields.pop("kind", Kind.CLUSTER.value),
        **fields,
    )


@pytest.mark.parametrize(
    ("code", "code_source", "error_type"),
    [
        ("DRIVER_NOT_RESPONDING", "cluster_event", "DatabricksDriverNotResponding"),
        ("DRIVER_NOT_RESPONDING", "termination_reason", "Unknown"),  # not a termination code
        ("DRIVER_UNREACHABLE", "termination_reason", "DatabricksDriverNotResponding"),
        ("DRIVER_UNREACHABLE", "cluster_event", "Unknown"),  # not an event type
    ],
)
def test_cluster_event_types_and_termination_codes_stay_apart(
    code, code_source, error_type
) -> None:
    alert = _alert(error_code=code, details={"code_source": code_source})
    assert classify(alert).error_type == error_type


def test_an_empty_table_still_classifies_unknown_as_manual() -> None:
    result = classify(_alert(error_code="X"), table=())
    assert (result.error_type, result.action, result.max_retries) == ("Unknown", "manual", 0)


def test_rule_max_retries_overrides_the_schedule_length() -> None:
    table = (
        Rule(
            "one-shot", "GatewayTimeout", Action.RETRY_PIPELINE, "low", source="adf", max_retries=1
        ),
    )
    result = classify(_alert(source="adf", kind="pipeline_run"), table=table)
    assert (result.max_retries, result.backoff_s) == (1, (10, 30, 60))


def test_text_patterns_ignore_case_and_facts_match_details() -> None:
    table = (
        Rule("by-fact", "X", Action.MANUAL, "high", facts={"shape": "adf_.*"}),
        Rule("by-text", "Y", Action.MANUAL, "high", text=r"Some\WThing"),
    )
    assert classify(_alert(details={"shape": "ADF_diagnostic_log"}), table).error_type == "X"
    assert classify(_alert(message="a SOME-THING b"), table).error_type == "Y"
    assert classify(_alert(message="a SOMETHING b"), table).error_type == "Unknown"
