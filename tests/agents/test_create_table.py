"""The create_table procedure without a broker: only the estate's DDL is ever sent, on the
workspace's warehouse, whatever the alert says; no DDL, no call. The Databricks client is a
recorder (the adapter has its own tests against the simulator)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agents.platforms import CannotRemediate, Platforms
from agents.procedures_databricks import create_table
from streams.adapters.databricks import Statement
from streams.estate import parse_estate
from streams.policy.model import ActionRequest, Alert, Classification
from streams.policy.steps import Status

WS = "6660001112223334"
DDL = "CREATE TABLE IF NOT EXISTS main.sales.orders (order_id BIGINT) USING DELTA"


@dataclass
class RecordingDatabricks:
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    state: str = "SUCCEEDED"

    async def execute_statement(self, ws, warehouse_id, statement):
        self.sent.append((ws, warehouse_id, statement))
        return Statement("01ed9db9-24c4-1cb6-a320-fb6ba6e8ae87", "PENDING")

    async def get_statement(self, ws, statement_id):
        return Statement(
            statement_id, self.state, "BAD_REQUEST: no" if self.state != "SUCCEEDED" else ""
        )


def platforms(dbx: RecordingDatabricks) -> Platforms:
    entry = {"host": "https://x", "token": "t", "sql_warehouse_id": "5e6f7a8b9c0d1e2f"}
    estate = parse_estate(
        {"databricks": {"workspaces": {WS: {**entry, "tables": {"main.sales.orders": DDL}}}}}
    )
    return Platforms(estate=estate, adf=None, databricks=dbx, playbooks=None)


def request(table: str, step: str = "execute", **context: str) -> ActionRequest:
    alert = Alert(
        "a", "databricks", "task_run", scope=WS, run_id="941004", sub_id="Build",
        message=f"[TABLE_OR_VIEW_NOT_FOUND] `{table}`; DROP TABLE main.sales.customers",
        details={"table": table, "table_ddl": "estate"},
    )  # fmt: skip
    classification = Classification(
        "DatabricksTableNotFound", "medium", "create_table", 1, (1,), "r"
    )
    return ActionRequest(
        action_id="c#1:create_table", chain_id="c", dedup_key="c", action="create_table",
        step=step, attempt=1, max_attempts=1, due_at=0, alert=alert,
        classification=classification, context=context,
    )  # fmt: skip


async def test_only_the_estate_ddl_is_sent_on_the_workspace_warehouse():
    dbx = RecordingDatabricks()
    report = await create_table(request("main.sales.orders"), platforms(dbx), 0)
    assert dbx.sent == [(WS, "5e6f7a8b9c0d1e2f", DDL)]
    assert report.status is Status.STARTED
    assert report.context == {"statement_id": "01ed9db9-24c4-1cb6-a320-fb6ba6e8ae87"}


@pytest.mark.parametrize("table", ["main.sales.returns", "", "main.sales.orders; DROP"])
async def test_a_table_without_ddl_in_the_estate_is_never_sent(table):
    dbx = RecordingDatabricks()
    with pytest.raises(CannotRemediate, match="the estate holds no DDL for table"):
        await create_table(request(table), platforms(dbx), 0)
    assert dbx.sent == []


@pytest.mark.parametrize(
    ("state", "status"),
    [("RUNNING", Status.PENDING), ("SUCCEEDED", Status.SUCCEEDED), ("FAILED", Status.FAILED)],
)
async def test_verification_reads_the_statement(state, status):
    dbx = RecordingDatabricks(state=state)
    verify = request("main.sales.orders", "verify", statement_id="01ed9db9")
    report = await create_table(verify, platforms(dbx), 0)
    assert (report.status, report.platform_status) == (status, state)
    assert dbx.sent == []
