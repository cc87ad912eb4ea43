"""Root causes (issue 16): run outputs trimmed, hand-off detail, missing tables and their DDL,
the approval floor of ``create_table``, and the repair that follows a scale or a new table."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streams.estate import EstateError, parse_estate
from streams.policy.chains import ChainPolicy, on_event
from streams.policy.model import (
    Action,
    ActionRequest,
    Alert,
    ChainEvent,
    ChainEventKind,
    Classification,
    Kind,
    OutcomeState,
)
from streams.policy.normalize_databricks_run import failed_task_runs
from streams.policy.rollout import Rollout, parse_rollout
from streams.policy.root_cause import (
    MAX_TASK_OUTPUTS,
    TRACE_LINES,
    data_type_detail,
    explained,
    trace_head,
    trimmed_output,
)
from streams.policy.steps import FOLLOWS, StepConfig, StepReport, after_step
from streams.policy.steps import Status as S
from streams.policy.tables import ddl_problem, table_name, with_table_facts

TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS main.sales.orders (id BIGINT, amount DECIMAL(18,2)) USING DELTA"
)

# ---- run outputs ---------------------------------------------------------------------------


def test_an_output_keeps_error_and_the_head_and_causes_of_its_trace_without_colours():
    frames = [f"\tat org.apache.spark.Frame{i}.run(Frame.scala:{i})" for i in range(200)]
    trace = "\n".join(
        [
            "\x1b[0;31morg.apache.spark.SparkException\x1b[0m: Job aborted",
            *frames,
            "Caused by: java.io.IOException: Connection reset by peer",
        ]
    )
    output = {
        "metadata": {"run_id": 7},
        "notebook_output": {"result": "x" * 100_000},
        "error": "org.apache.spark.SparkException: Job aborted " + "y" * 5000,
        "error_trace": trace,
    }
    kept = trimmed_output(output)
    assert set(kept) == {"error", "error_trace"} and len(kept["error"]) == 1000
    lines = kept["error_trace"].splitlines()
    assert lines[0] == "org.apache.spark.SparkException: Job aborted"  # ANSI colours gone
    assert len(lines) == TRACE_LINES + 1
    assert lines[-1] == "Caused by: java.io.IOException: Connection reset by peer"
    assert trimmed_output({"metadata": {}, "notebook_output": {}}) == {}


@pytest.mark.parametrize(
    ("tasks", "sub_id", "wanted"),
    [
        ([("a", 11, "FAILED", 0), ("b", 12, "SUCCESS", 0)], "", ("11",)),
        ([("a", 11, "FAILED", 0), ("a", 13, "FAILED", 1)], "", ("13",)),  # latest attempt
        ([("a", 11, "FAILED", 0), ("b", 12, "FAILED", 0)], "b", ("12",)),  # the task webhook's
        ([(f"t{i}", 100 + i, "FAILED", 0) for i in range(9)], "", tuple(map(str, range(100, 105)))),
        ([("a", 11, "UPSTREAM_FAILED", 0)], "", ()),  # a consequence, not a cause
    ],
)
def test_outputs_are_fetched_for_the_failed_tasks_only_and_at_most_a_few(tasks, sub_id, wanted):
    run = {
        "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
        "tasks": [
            {"task_key": k, "run_id": r, "attempt_number": n, "state": {"result_state": st}}
            for k, r, st, n in tasks
        ],
    }
    assert failed_task_runs(run, sub_id, MAX_TASK_OUTPUTS) == wanted


@pytest.mark.parametrize("run", [None, {"state": {"life_cycle_state": "RUNNING"}}, {"tasks": 5}])
def test_no_output_is_fetched_for_a_running_or_malformed_run(run):
    assert failed_task_runs(run) == ()


# ---- hand-off detail -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "facts"),
    [
        (
            "Failure happened on 'Sink' side. ErrorCode=TypeConversionFailure,Exception occurred "
            "when converting value 'abc' for column name 'qty' from type 'String' (precision:, "
            "scale:) to type 'Int32' (precision:10, scale:0). Additional info: Input string was "
            "not in a correct format.",
            {"column": "qty", "source_type": "String", "target_type": "Int32"},
        ),
        (
            "ErrorCode=UserErrorInvalidDataType,'Type=Microsoft.DataTransfer.Common.Shared."
            "HybridDeliveryException,Message=Column 'OrderDate' contains an invalid value "
            "'2023-13-45'. Cannot convert '2023-13-45' to type 'DateTime'.,Source=Microsoft'",
            {"column": "OrderDate", "target_type": "DateTime"},
        ),
        (
            "ErrorCode=SqlOperationFailed,Message=Conversion failed when converting the varchar "
            "value 'n/a' to data type int.",
            {"source_type": "varchar", "target_type": "int"},
        ),
        (
            "Error converting data type nvarchar to numeric.",
            {"source_type": "nvarchar", "target_type": "numeric"},
        ),
        ("ErrorCode=UserErrorInvalidDataType,'Message=bad value'", {}),
    ],
)
def test_the_column_and_types_of_a_failed_conversion_are_read_from_the_adf_message(message, facts):
    assert data_type_detail(message) == facts


def _manual(error_type: str) -> Classification:
    return Classification(error_type, "medium", "manual", 0, (), f"rule:{error_type}")


def _adf(message: str) -> Alert:
    return Alert("a", "adf", Kind.ACTIVITY_RUN.value, scope="f", run_id="r", message=message)


def _dbx(message: str, **details: str) -> Alert:
    return Alert(
        "a", "databricks", Kind.TASK_RUN.value, scope="1", run_id="9", message=message,
        details=details,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("alert", "error_type", "facts", "said"),
    [
        (
            _adf(
                "ErrorCode=TypeConversionFailure,converting value 'x' for column name 'qty' "
                "from type 'String' to type 'Int32'."
            ),  # fmt: skip
            "UserErrorInvalidDataType",
            {"column": "qty", "source_type": "String", "target_type": "Int32"},
            "column 'qty': String -> Int32; fix the mapping or the data (pipemedic changes no pipeline)",
        ),
        (
            _dbx(
                "[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`orders` cannot be found."
            ),
            "DatabricksTableNotFound",
            {"table": "main.sales.orders"},
            "table main.sales.orders is missing and the estate has no DDL for it",
        ),
        (
            _dbx(
                "ZeroDivisionError: division by zero\n-----------\nZeroDivisionError  Traceback\n"
                "----> 3 ratio = total / count\nmore\nmore"
            ),  # fmt: skip
            "DatabricksJobExecutionError",
            {},
            "first lines: ZeroDivisionError: division by zero | ZeroDivisionError  Traceback | "
            "----> 3 ratio = total / count",
        ),
    ],
)
def test_a_hand_off_carries_what_people_need(alert, error_type, facts, said):
    found, classification = explained(alert, _manual(error_type))
    assert classification.reason == f"rule:{error_type}; {said}"
    assert {k: found.details[k] for k in facts} == facts


def test_only_manual_classifications_are_explained():
    alert = _dbx("java.lang.OutOfMemoryError: Java heap space")
    scale = Classification("DatabricksJobExecutionError", "medium", "scale_cluster", 1, (5,), "r")
    assert explained(alert, scale) == (alert, scale)
    other = _manual("GatewayTimeout")
    assert explained(alert, other) == (alert, other)


def test_trace_head_is_short():
    assert len(trace_head("x" * 5000)) == 400


# ---- missing tables and the estate's DDL ---------------------------------------------------


@pytest.mark.parametrize(
    ("message", "name"),
    [
        (
            "[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`orders` cannot be found.",
            "main.sales.orders",
        ),
        ("AnalysisException: Table or view not found: Sales.Orders; line 1 pos 14", "sales.orders"),
        (
            "NoSuchTableException: Table or view 'orders' not found in database 'sales'",
            "sales.orders",
        ),
        ("Table main.sales.orders does not exist", "main.sales.orders"),
        ("java.lang.OutOfMemoryError: Java heap space", ""),
    ],
)
def test_the_missing_table_is_named_from_the_error(message, name):
    assert table_name(message) == name


def test_only_a_three_part_name_with_a_ddl_in_the_estate_is_marked_creatable():
    message = "[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`orders` cannot be found."
    assert with_table_facts(_dbx(message), {"main.sales.orders"}).details == {
        "table": "main.sales.orders",
        "table_ddl": "estate",
    }
    assert with_table_facts(_dbx(message), set()).details == {"table": "main.sales.orders"}
    two_parts = _dbx("Table or view not found: sales.orders")
    assert "table_ddl" not in with_table_facts(two_parts, {"sales.orders"}).details
    assert with_table_facts(_dbx("boom"), {"main.sales.orders"}).details == {}


@pytest.mark.parametrize(
    ("name", "ddl", "problem"),
    [
        ("main.sales.orders", TABLE_DDL, ""),
        ("main.sales.orders", TABLE_DDL + ";", ""),
        ("main.sales.orders", "create table if not exists `main`.`sales`.`orders` (id int)", ""),
        ("main.sales.orders", "CREATE TABLE main.sales.orders (id INT)", "must be one CREATE TABLE IF NOT EXISTS statement"),
        ("main.sales.orders", "CREATE OR REPLACE TABLE main.sales.orders (id INT)", "must be one CREATE TABLE IF NOT EXISTS statement"),
        ("main.sales.orders", TABLE_DDL + "; DROP TABLE main.sales.customers", "must be a single statement (no ';' inside)"),
        ("main.sales.orders", "CREATE TABLE IF NOT EXISTS main.sales.other (id INT)", "creates 'main.sales.other', not 'main.sales.orders'"),
        ("sales.orders", "CREATE TABLE IF NOT EXISTS sales.orders (id INT)", "'sales.orders' is not a lower-case catalog.schema.table name"),
        ("Main.Sales.Orders", TABLE_DDL, "'Main.Sales.Orders' is not a lower-case catalog.schema.table name"),
    ],
)  # fmt: skip
def test_ddl_is_run_only_as_one_idempotent_create_of_its_own_table(name, ddl, problem):
    assert ddl_problem(name, ddl) == problem


def _workspace(**extra) -> dict:
    return {"databricks": {"workspaces": {"123": {"host": "https://x", "token": "t", **extra}}}}


def test_the_estate_refuses_ddl_it_may_not_run_naming_its_place():
    estate = parse_estate(
        _workspace(sql_warehouse_id="abc123", tables={"main.sales.orders": TABLE_DDL})
    )
    assert estate.databricks.workspaces["123"].tables == {"main.sales.orders": TABLE_DDL}
    with pytest.raises(EstateError, match=r"estate\.databricks\.workspaces\.123: tables need"):
        parse_estate(_workspace(tables={"main.sales.orders": TABLE_DDL}))
    with pytest.raises(EstateError, match=r"tables\.main\.sales\.orders: must be one CREATE"):
        parse_estate(
            _workspace(sql_warehouse_id="abc", tables={"main.sales.orders": "DROP TABLE x"})
        )


# ---- create_table always asks first ----------------------------------------------------------

CREATE = Classification("DatabricksTableNotFound", "medium", "create_table", 1, (5,), "r")
REPAIR = Classification("DatabricksSparkException", "medium", "repair_job", 2, (60, 300), "r")


@pytest.mark.parametrize(
    ("rows", "default", "classification", "mode"),
    [
        ([], "automatic", CREATE, ("approval", "create_table always asks first")),
        ([], "automatic", REPAIR, ("automatic", "global mode")),
        ([], "observe", CREATE, ("observe", "global mode")),  # stricter still wins
        ([{"name": "all", "mode": "automatic"}], "automatic", CREATE, ("approval", "create_table always asks first")),
        ([{"name": "t", "mode": "automatic", "error_types": ["DatabricksTableNotFound"]}], "approval", CREATE, ("automatic", "rollout row 't'")),
    ],
)  # fmt: skip
def test_create_table_waits_for_approval_whatever_the_global_mode(
    rows, default, classification, mode
):
    table = Rollout(parse_rollout(rows), default_mode=default)
    alert = _dbx("missing table")
    assert table.decide(alert, classification) == mode


def test_a_chain_holds_the_ddl_until_approved_in_automatic_mode():
    alert = _dbx("missing table")
    event = ChainEvent(ChainEventKind.FAILURE.value, "dbx|1|9", "dbx|1|9", 0, alert, CREATE)
    policy = ChainPolicy(mode="automatic", rollout=Rollout(default_mode="automatic"))
    step = on_event(None, event, now_ms=0, policy=policy)
    assert step.schedule is None and step.chain.state == "awaiting_approval"
    assert [o.state for o in step.outcomes] == [OutcomeState.AWAITING_APPROVAL.value]


# ---- the repair that follows ---------------------------------------------------------------

CONFIG = StepConfig(verify_poll_s=1)


def _request(action: str, kind: str, step: str = "verify") -> ActionRequest:
    alert = Alert("a", "databricks", kind, scope="1", run_id="9" if kind != "cluster" else "")
    return ActionRequest(
        action_id=f"c#1:{action}", chain_id="c", dedup_key="c", action=action, step=step,
        attempt=1, max_attempts=1, due_at=0, alert=alert, classification=CREATE,
        context={"target_workers": "3"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("action", "kind", "follow_up"),
    [
        (Action.SCALE_CLUSTER, Kind.TASK_RUN, Action.REPAIR_JOB),
        (Action.SCALE_CLUSTER, Kind.JOB_RUN, Action.REPAIR_JOB),
        (Action.CREATE_TABLE, Kind.TASK_RUN, Action.REPAIR_JOB),
        (Action.SCALE_CLUSTER, Kind.CLUSTER, None),  # a cluster alone: scaled is fixed
        (Action.REPAIR_JOB, Kind.TASK_RUN, None),
    ],
)
def test_a_scale_or_a_new_table_is_followed_by_a_repair_of_the_run(action, kind, follow_up):
    effects = after_step(_request(action, kind), StepReport(S.SUCCEEDED), now_ms=7, config=CONFIG)
    if follow_up is None:
        assert effects.requests == () and effects.chain_events[0].kind == "resolved"
        return
    (then,) = effects.requests
    assert effects.chain_events == () and effects.outcomes == ()  # the chain waits for it
    assert (then.action, then.step, then.due_at, then.action_id) == (
        follow_up.value,
        "execute",
        7,
        f"c#1:{follow_up.value}",
    )
    assert then.context == {FOLLOWS: action.value}
    started = after_step(
        then, StepReport(S.STARTED, new_run_id="9", repair_id="5"), now_ms=8, config=CONFIG
    )
    (verify,) = started.requests
    assert verify.action_id == f"c#1:verify:{follow_up.value}"  # apart from the first verify
    resolved = after_step(verify, StepReport(S.SUCCEEDED), now_ms=9, config=CONFIG)
    assert resolved.requests == () and resolved.chain_events[0].kind == "resolved"


def test_a_failed_statement_re_enters_the_chain_without_a_repair():
    effects = after_step(
        replace(_request("create_table", "task_run"), step="verify"),
        StepReport(S.FAILED, detail="BAD_REQUEST: simulated statement failure"),
        now_ms=1,
        config=CONFIG,
    )
    assert effects.requests == () and effects.chain_events[0].kind == "failure"
