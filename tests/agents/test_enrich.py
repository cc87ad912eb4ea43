"""Enrichment without a broker: the window it asks about, what it passes on, and what it
keeps when the platform cannot answer or the alert names something that cannot exist. The
ADF client is replaced by a recorder of the queries it is asked (the adapter has its own
tests against the simulator); time is a manual clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from agents.enrich import WINDOW_SLACK_MS, Enricher
from agents.platforms import Platforms
from streams.adapters.adf import PipelineRun
from streams.adapters.errors import ErrorKind, PlatformError
from streams.codecs import decode_items, encode
from streams.estate import Estate
from streams.policy.model import Alert, ClassifiedAlert, Signal
from streams.policy.rules import DEFAULT_RULES, DEFAULT_SCHEDULES, Classifier
from tests.agents.helpers import fake_topology

RUN_A = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
RUN_B = "7a1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"


@dataclass
class RecordingADF:
    runs: list[PipelineRun] = field(default_factory=list)
    error: PlatformError | None = None
    queries: list[dict] = field(default_factory=list)

    async def query_runs(self, factory, **query):
        self.queries.append({"factory": factory, **query})
        if self.error is not None:
            raise self.error
        return self.runs


def metric_alert(pipeline: str, start: int, end: int) -> bytes:
    alert = Alert(
        alert_id="m1",
        source="adf",
        kind="pipeline_run",
        signal=Signal.ENRICH.value,
        scope="adf-sales-prod",
        pipeline=pipeline,
        details={"window_start_ms": str(start), "window_end_ms": str(end)},
    )
    record = ClassifiedAlert(alert=alert, received_at=start, origin="alerts-raw/0/1")
    return encode("classified_alert", record.to_dict())


def enricher(adf: RecordingADF):
    topo = fake_topology()
    platforms = Platforms(estate=Estate(), adf=adf, databricks=None, playbooks=None)
    return Enricher(topo, platforms, Classifier(DEFAULT_RULES, DEFAULT_SCHEDULES)), topo


def passed_on(topo) -> list[dict]:
    return [
        item["alert"]
        for _, body, _ in topo.classified.sent
        for item in decode_items("classified_alert", body)
    ]


def run(run_id: str, message: str) -> PipelineRun:
    return PipelineRun(
        run_id=run_id, pipeline="Nightly_Aggregates", status="Failed", message=message
    )


async def test_a_metric_alert_becomes_one_failure_per_failed_run_in_its_window():
    adf = RecordingADF(runs=[run(RUN_A, "Gateway Timeout"), run(RUN_B, "Gateway Timeout")])
    enrich, topo = enricher(adf)
    now = topo.clock.now_ms()
    start, end = now - 900_000, now - 60_000
    await enrich(SimpleNamespace(value=metric_alert("Nightly_Aggregates", start, end)))
    [query] = adf.queries
    assert query["factory"] == "adf-sales-prod" and query["pipeline"] == "Nightly_Aggregates"
    assert query["after"] == start - WINDOW_SLACK_MS
    assert query["before"] == now  # the window's slack never reaches into the future
    assert query["status"] == "Failed" and query["latest_only"] is True
    found = passed_on(topo)
    assert sorted(a["run_id"] for a in found) == [RUN_A, RUN_B]
    assert all(a["signal"] == Signal.FAILURE.value for a in found)


async def test_when_the_platform_cannot_answer_the_alert_is_kept_as_a_failure():
    adf = RecordingADF(error=PlatformError(ErrorKind.TRANSIENT, "HTTP 503"))
    enrich, topo = enricher(adf)
    now = topo.clock.now_ms()
    await enrich(SimpleNamespace(value=metric_alert("Nightly_Aggregates", now - 60_000, now)))
    [kept] = passed_on(topo)
    assert kept["signal"] == Signal.FAILURE.value
    assert "enrichment failed (transient)" in kept["message"]


async def test_a_pipeline_name_that_cannot_exist_is_never_asked_about():
    adf = RecordingADF(runs=[run(RUN_A, "x")])
    enrich, topo = enricher(adf)
    now = topo.clock.now_ms()
    hostile = "../../providers/Microsoft.Authorization/roleAssignments/x"
    await enrich(SimpleNamespace(value=metric_alert(hostile, now - 60_000, now)))
    assert adf.queries == []
    [kept] = passed_on(topo)
    assert "invalid_name" in kept["message"] and "cannot exist" in kept["message"]


async def test_a_window_without_a_failed_run_ends_with_people_saying_why():
    enrich, topo = enricher(RecordingADF(runs=[]))
    now = topo.clock.now_ms()
    start, end = now - 15 * 60_000, now - 60_000
    await enrich(SimpleNamespace(value=metric_alert("Nightly_Aggregates", start, end)))
    [record] = [
        item
        for _, body, _ in topo.classified.sent
        for item in decode_items("classified_alert", body)
    ]
    assert record["alert"]["signal"] == Signal.FAILURE.value
    assert record["alert"]["message"].startswith("unmatched: no failed run of Nightly_Aggregates")
    assert record["classification"]["error_type"] == "Unmatched"
    assert record["classification"]["action"] == "manual"


# ---- Databricks: the run, then the output of each failed task ---------------------------------

WS = "4417362907193652"
DDL = "CREATE TABLE IF NOT EXISTS main.sales.orders (id BIGINT) USING DELTA"
MISSING = "[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`sales`.`orders` cannot be found."


@dataclass
class RecordingDatabricks:
    outputs: dict[str, object]  # task run id -> its trimmed output, or the error it raises
    asked: list[str] = field(default_factory=list)

    async def get_run_json(self, ws, run_id):
        generic = {"life_cycle_state": "TERMINATED", "result_state": "FAILED"}
        tasks = [
            {"task_key": f"t{i}", "run_id": 100 + i, "state": {**generic, "state_message": f"Task t{i} failed"}}
            for i in range(len(self.outputs))
        ]  # fmt: skip
        return {
            "run_id": int(run_id),
            "job_id": 7,
            "run_name": "Rollup",
            "state": generic,
            "status": {"termination_details": {"code": "RUN_EXECUTION_ERROR", "type": "CLIENT_ERROR"}},
            "tasks": tasks,
        }  # fmt: skip

    async def get_run_output(self, ws, task_run_id):
        self.asked.append(task_run_id)
        found = self.outputs[task_run_id]
        if isinstance(found, PlatformError):
            raise found
        return found


def job_webhook() -> bytes:
    alert = Alert(
        alert_id="w1", source="databricks", kind="job_run", signal=Signal.ENRICH.value,
        scope=WS, run_id="911005", job_id="7", pipeline="Rollup",
    )  # fmt: skip
    return encode("classified_alert", ClassifiedAlert(alert=alert, received_at=1).to_dict())


async def test_a_job_failure_is_classified_by_the_output_of_each_failed_task():
    from streams.estate import parse_estate

    dbx = RecordingDatabricks(
        {
            "100": {"error": "java.lang.OutOfMemoryError: GC overhead limit exceeded"},
            "101": {"error": MISSING},
            "102": PlatformError(ErrorKind.TRANSIENT, "503"),
        }
    )
    workspace = {"host": "https://x", "token": "t", "sql_warehouse_id": "abc123"}
    estate = parse_estate(
        {"databricks": {"workspaces": {WS: {**workspace, "tables": {"main.sales.orders": DDL}}}}}
    )
    topo = fake_topology()
    platforms = Platforms(estate=estate, adf=None, databricks=dbx, playbooks=None)
    enrich = Enricher(topo, platforms, Classifier(DEFAULT_RULES, DEFAULT_SCHEDULES))
    await enrich(SimpleNamespace(value=job_webhook()))
    assert dbx.asked == ["100", "101", "102"]
    items = {
        item["alert"]["sub_id"]: item
        for _, body, _ in topo.classified.sent
        for item in decode_items("classified_alert", body)
    }
    assert {k: v["classification"]["action"] for k, v in items.items()} == {
        "t0": "scale_cluster",
        "t1": "create_table",
        "t2": "manual",  # its output could not be read: "Task t2 failed" says nothing more
    }
    assert items["t1"]["alert"]["details"]["table"] == "main.sales.orders"
    assert items["t2"]["alert"]["message"] == "Task t2 failed"
    assert items["t2"]["alert"]["details"]["output"] == "output not read (transient)"
    assert "output" not in items["t0"]["alert"]["details"]
