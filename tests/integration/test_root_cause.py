"""Issue 16 end to end: root causes only the run output tells, a missing table created from the
estate's DDL after approval, and hand-offs that say what people need.

One stack (tests/integration/worlds/root_cause.yaml), global mode automatic. Every Databricks
task says only "Workload failed, see run output for details."; the simulator serves the real
error in ``jobs/runs/get-output``. Assertions read the simulator's call log and the audit
trail in chDB.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipemedic.stack import EmbeddedStack
from tests.integration.chain_scenarios import rows_until
from tests.integration.e2e_helpers import Settled, adf_activity_record, job_failed, settle

pytestmark = pytest.mark.integration

WORLD = Path(__file__).parent / "worlds" / "root_cause.yaml"
WS, CLUSTER, WAREHOUSE = "6660001112223334", "0401-000001-mem01", "5e6f7a8b9c0d1e2f"
SUB, RG, FACTORY = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", "rg-rc", "adf-rc-prod"
DDL = "CREATE TABLE IF NOT EXISTS main.sales.orders (order_id BIGINT, amount DECIMAL(18,2)) USING DELTA"
JOBS = {  # run id -> (job id, job name)
    941001: (8201, "Rollup_Daily"),
    941002: (8202, "Shuffle_Heavy"),
    941003: (8203, "Churn_Features"),
    941004: (8204, "Orders_Mart"),
    941005: (8205, "Returns_Mart"),
}
INVOICES_RUN, CHURN_RUN = (
    "0e1c0001-5d3c-4b7a-9f10-2c3d4e5f6c01",
    "0e1c0002-5d3c-4b7a-9f10-2c3d4e5f6c02",
)
TYPE_CONVERSION = (
    "Failure happened on 'Sink' side. ErrorCode=TypeConversionFailure,Exception occurred when "
    "converting value 'n/a' for column name 'amount' from type 'String' (precision:, scale:) to "
    "type 'Decimal' (precision:18, scale:2). Additional info: Input string was not in a correct "
    "format."
)


def chain(run_id: int) -> str:
    return f"dbx|{WS}|{run_id}"


def _alerts() -> list[bytes]:
    adf = {"subscription": SUB, "resource_group": RG, "factory": FACTORY}
    return [
        *(job_failed(workspace=WS, run_id=r, job_id=j, name=n) for r, (j, n) in JOBS.items()),
        adf_activity_record(
            **adf, run_id=INVOICES_RUN, pipeline="Load_Invoices", activity="CopyInvoices",
            message=TYPE_CONVERSION,
        ),
        adf_activity_record(
            **adf, run_id=CHURN_RUN, pipeline="Score_Churn", activity="RunNotebook",
            message="Error 403. The Databricks access token has expired.", error_code="3200",
        ),
    ]  # fmt: skip


def _only_the_ddl_waits(rows: list[dict]) -> bool:
    ended = {r["chain_id"] for r in rows if r["state"] in ("resolved", "manual", "gave_up")}
    waiting = {r["chain_id"] for r in rows if r["state"] == "awaiting_approval"}
    return waiting == {chain(941004)} and len(ended - waiting) == len(JOBS) + 1


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Settled, int]:
    extras = {
        "databricks": {
            "workspaces": {
                WS: {"sql_warehouse_id": WAREHOUSE, "tables": {"main.sales.orders": DDL}}
            }
        }
    }
    with EmbeddedStack(tmp_path_factory.mktemp("root-cause"), WORLD, estate_extras=extras) as stack:
        stack.send_raw(_alerts())
        asyncio.run(rows_until(stack.bootstrap, _only_the_ddl_waits, 90))
        # everything else is over, long past the DDL's 1 s backoff: nothing ran it yet
        before_approval = stack.simulator.count("POST", "*/sql/statements")
        stack.decide(chain(941004), approve=True, by="dana")
        return settle(stack, 90), before_approval


def test_every_chain_ends_as_its_root_cause_says(run):
    s, _ = run
    assert s.watch.settled
    assert {c: row["final_state"] for c, row in s.chains.items()} == {
        chain(941001): "resolved",
        chain(941002): "resolved",
        chain(941003): "manual",
        chain(941004): "resolved",
        chain(941005): "manual",
        f"adf|{FACTORY}|{INVOICES_RUN}": "manual",
        f"adf|{FACTORY}|{CHURN_RUN}": "manual",
    }
    # the output of each failed task was read once, by its task run id
    outputs = s.calls_to("GET", "*/api/2.2/jobs/runs/get-output", 200)
    assert len(outputs) == len(JOBS) and all(set(c.query) == {"run_id"} for c in outputs)
    assert s.calls_to("POST", "*/createRun") == []  # nothing of ADF's is retried


def test_out_of_memory_in_the_output_scales_the_cluster_then_repairs_the_run(run):
    s, _ = run
    (resize,) = s.calls_to("POST", "*/clusters/resize")
    assert resize.body == {"cluster_id": CLUSTER, "num_workers": 6}
    (repair,) = [c for c in s.calls_to("POST", "*/jobs/runs/repair") if c.body["run_id"] == 941001]
    assert repair.at > resize.at
    # the repair waited for the cluster to run at its new size
    resized = [c for c in s.calls_to("GET", "*/clusters/get", 200) if c.at < repair.at]
    assert resized and resized[-1].query["cluster_id"] == CLUSTER
    executed = [r["action"] for r in s.rows_of(chain(941001), "executed")]
    assert executed == ["scale_cluster", "repair_job"]
    assert s.rows_of(chain(941001), "resolved")


def test_a_transient_shuffle_failure_is_repaired_without_scaling(run):
    s, _ = run
    assert [r["action"] for r in s.rows_of(chain(941002), "executed")] == ["repair_job"]
    assert [c.body["run_id"] for c in s.calls_to("POST", "*/jobs/runs/repair")].count(941002) == 1


def test_code_errors_and_tables_without_ddl_go_to_people_with_what_they_need(run):
    s, _ = run
    (code,) = s.rows_of(chain(941003), "manual")
    assert "rule:dbx-code-error" in code["detail"]
    assert "first lines: ZeroDivisionError: division by zero | " in code["detail"]
    assert "\x1b" not in code["detail"]  # the notebook's colours are gone
    (table,) = s.rows_of(chain(941005), "manual")
    assert "table main.sales.returns is missing and the estate has no DDL for it" in table["detail"]
    (types,) = s.rows_of(f"adf|{FACTORY}|{INVOICES_RUN}", "manual")
    assert "column 'amount': String -> Decimal" in types["detail"]
    (token,) = s.rows_of(f"adf|{FACTORY}|{CHURN_RUN}", "manual")
    assert "rotate it there; never retried" in token["detail"]
    # none of them touched a platform
    acted = {
        c.body.get("run_id") for c in s.calls if c.method == "POST" and "/jobs/runs/" in c.path
    }
    assert not acted & {941003, 941005}


def test_a_missing_table_is_created_once_after_approval_then_the_run_is_repaired(run):
    s, before_approval = run
    assert before_approval == 0
    (waiting,) = s.rows_of(chain(941004), "awaiting_approval")
    assert "create_table always asks first" in waiting["detail"]
    (statement,) = s.calls_to("POST", "*/api/2.0/sql/statements")
    assert statement.body == {"statement": DDL, "warehouse_id": WAREHOUSE, "wait_timeout": "0s"}
    polls = s.calls_to("GET", "*/api/2.0/sql/statements/*", 200)
    (repair,) = [c for c in s.calls_to("POST", "*/jobs/runs/repair") if c.body["run_id"] == 941004]
    assert polls and repair.at > polls[-1].at > statement.at
    executed = [r["action"] for r in s.rows_of(chain(941004), "executed")]
    assert executed == ["create_table", "repair_job"]
    assert any(r["detail"] == "approved by dana" for r in s.rows_of(chain(941004), "scheduled"))
