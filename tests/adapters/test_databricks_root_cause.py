"""Run outputs and statement execution: the real databricks-sdk against the simulator."""

from __future__ import annotations

import pytest

from streams.adapters.errors import ErrorKind, PlatformError

DDL = "CREATE TABLE IF NOT EXISTS main.sales.orders (id BIGINT) USING DELTA"
OOM = "java.lang.OutOfMemoryError: GC overhead limit exceeded"


def _world(small_world, estate, **workspace):
    world = small_world()
    ws = world["workspaces"][0]
    ws["runs"][0]["tasks"][0] |= {
        "state_message": "Task ingest failed",
        "error": OOM,
        "error_trace": "\x1b[0;31m"
        + OOM
        + "\x1b[0m\n"
        + "\n".join(f"\tat f{i}" for i in range(60)),
    }
    ws.update(workspace)
    return world


async def test_the_output_of_a_failed_task_is_its_error_and_a_trimmed_trace(
    start_sim, databricks_for, estate, small_world
) -> None:
    sim = await start_sim(_world(small_world, estate))
    dbx = databricks_for(sim)
    run = await dbx.get_run_json(estate.workspace, estate.job_run)
    failed, succeeded = (task["run_id"] for task in run["tasks"])
    output = await dbx.get_run_output(estate.workspace, failed)
    assert output["error"] == OOM
    trace = output["error_trace"].splitlines()
    assert trace[0] == OOM and len(trace) == 20  # colours gone, first lines kept
    assert await dbx.get_run_output(estate.workspace, succeeded) == {}
    (call, _) = sim.matching("GET", "*/jobs/runs/get-output")
    assert call.path.endswith("/api/2.2/jobs/runs/get-output") and call.query == {
        "run_id": str(failed)
    }
    # a job run of several tasks has no output of its own: Databricks says so with a 400
    with pytest.raises(PlatformError) as refused:
        await dbx.get_run_output(estate.workspace, estate.job_run)
    assert refused.value.kind is ErrorKind.BAD_REQUEST
    assert "multiple tasks" in str(refused.value)


async def test_a_statement_runs_on_the_warehouse_and_is_polled_until_it_ends(
    start_sim, databricks_for, estate, small_world
) -> None:
    warehouses = [
        {"warehouse_id": "abc123", "polls_to_finish": 1},
        {"warehouse_id": "bad456", "failing_statements": ["*orders*"], "polls_to_finish": 0},
    ]
    sim = await start_sim(_world(small_world, estate, sql_warehouses=warehouses))
    dbx = databricks_for(sim)
    statement = await dbx.execute_statement(estate.workspace, "abc123", DDL)
    assert statement.state == "PENDING" and statement.statement_id
    states = [
        (await dbx.get_statement(estate.workspace, statement.statement_id)).state for _ in range(2)
    ]
    assert states == ["RUNNING", "SUCCEEDED"]
    (call,) = sim.matching("POST", "*/api/2.0/sql/statements")
    assert call.body == {"statement": DDL, "warehouse_id": "abc123", "wait_timeout": "0s"}
    assert "main.sales.orders" in sim.sim.databricks.workspaces[estate.workspace].warehouses.tables

    failed = await dbx.execute_statement(estate.workspace, "bad456", DDL)
    assert failed.state == "FAILED"
    assert failed.error == "BAD_REQUEST: simulated statement failure"


@pytest.mark.parametrize(
    ("warehouse", "statement_id", "kind"),
    [
        ("abc'; DROP", "", ErrorKind.BAD_REQUEST),  # never sent
        ("", "not a statement id!", ErrorKind.BAD_REQUEST),  # never sent
        ("nowhere1", "", ErrorKind.NOT_FOUND),  # "Warehouse nowhere1 does not exist."
        ("", "01ed9db9-24c4-1cb6-a320-fb6ba6e8ae87", ErrorKind.NOT_FOUND),
    ],
)
async def test_bad_warehouse_and_statement_ids(
    start_sim, databricks_for, estate, small_world, warehouse, statement_id, kind
) -> None:
    sim = await start_sim(_world(small_world, estate))
    dbx = databricks_for(sim)
    with pytest.raises(PlatformError) as caught:
        if warehouse:
            await dbx.execute_statement(estate.workspace, warehouse, DDL)
        else:
            await dbx.get_statement(estate.workspace, statement_id)
    assert caught.value.kind is kind
    if kind is ErrorKind.BAD_REQUEST:
        assert sim.count(path="*/sql/statements*") == 0
