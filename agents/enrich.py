"""Enrich: ask the platform for the facts an alert did not carry.

ADF metric alerts name a pipeline but no run: ``queryPipelineRuns`` (failed, latest only, over
the alert's window) gives one alert per failed run; none at all gives one ``Unmatched``
failure, which ends with people, so an alert never vanishes. Databricks job webhooks carry no error
detail: ``jobs/runs/get`` gives termination codes and the failed tasks, and
``jobs/runs/get-output`` of each failed task (a few at most, trimmed) their real error, which
the task's ``state_message`` ("Task X failed") often is not. An output that cannot be read
leaves the task's own message (``details.output`` says why). A missing table the error names
is looked up in the workspace's estate DDL (:mod:`streams.policy.tables`). The enriched
alerts are classified and continue like any other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents.common import CRASH_WORKER, run_concurrently
from agents.ingest import classify_alert
from agents.outbox import Outbox
from agents.platforms import Platforms
from streams.adapters.errors import ErrorKind, PlatformError
from streams.app import Topology
from streams.codecs import decode
from streams.policy import routing
from streams.policy.model import Alert, ClassifiedAlert, Signal, Source
from streams.policy.names import INVALID_NAME, invalid_name
from streams.policy.normalize import (
    alerts_from_adf_runs,
    alerts_from_databricks_run,
    unmatched_alert,
)
from streams.policy.normalize_databricks_run import failed_task_runs
from streams.policy.remedies import latest_repair_id
from streams.policy.root_cause import MAX_TASK_OUTPUTS
from streams.policy.rules import Classifier
from streams.policy.tables import with_table_facts

WINDOW_SLACK_MS = 5 * 60 * 1000


class Enricher:
    def __init__(self, topology: Topology, platforms: Platforms, classifier: Classifier):
        self.topology = topology
        self.platforms = platforms
        self.classifier = classifier

    async def __call__(self, event: Any) -> None:
        record = ClassifiedAlert.from_dict(decode("classified_alert", event.value))
        alert = record.alert
        now = self.topology.clock.now_ms()
        refused = invalid_name(alert)
        try:
            if refused is not None:  # alert content never shapes a platform call
                raise PlatformError(ErrorKind.BAD_REQUEST, f"{INVALID_NAME}: {refused}")
            enriched = await self.enrich(alert, now)
        except PlatformError as error:
            # keep the fact rather than lose it: people can still act on what we know
            detail = f"enrichment failed ({error.kind.value}): {error}"
            enriched = [_as_failure(alert, detail)]
        outbox = Outbox(self.topology)
        for found in enriched:
            outbox.add_classified(
                classify_alert(
                    found, self.classifier, received_at=record.received_at, origin=record.origin
                )
            )
        await outbox.flush()

    async def enrich(self, alert: Alert, now: int) -> list[Alert]:
        if alert.source == Source.ADF.value:
            start = int(alert.details.get("window_start_ms") or now - 3600_000) - WINDOW_SLACK_MS
            end = int(alert.details.get("window_end_ms") or now) + WINDOW_SLACK_MS
            runs = await self.platforms.need_adf().query_runs(
                alert.scope,
                after=start,
                before=min(end, now),
                pipeline=alert.pipeline or None,
                status="Failed",
                latest_only=True,
            )
            if not runs:  # nothing to act on, but it fired: people hear of it, with why
                return [unmatched_alert(alert, start + WINDOW_SLACK_MS, end - WINDOW_SLACK_MS)]
            return alerts_from_adf_runs(alert, [_adf_run_json(r) for r in runs], received_at_ms=now)
        dbx = self.platforms.need_databricks()
        run = await dbx.get_run_json(alert.scope, alert.run_id)
        outputs, unread = {}, {}
        for task_run in failed_task_runs(run, alert.sub_id, MAX_TASK_OUTPUTS):
            try:
                outputs[task_run] = await dbx.get_run_output(alert.scope, task_run)
            except PlatformError as error:  # HeldBack included: the task's message will do
                unread[task_run] = f"output not read ({error.kind.value})"
        found = alerts_from_databricks_run(alert, run, received_at_ms=now, outputs=outputs)
        workspace = self.platforms.estate.databricks.workspaces.get(alert.scope)
        tables = workspace.tables if workspace is not None else {}
        repair_id = latest_repair_id(run)
        enriched = []
        for each in found:
            facts = {
                "repair_id": repair_id,
                "output": unread.get(each.details.get("task_run_id", ""), ""),
            }
            details = {**each.details, **{k: v for k, v in facts.items() if v}}
            enriched.append(with_table_facts(replace(each, details=details), tables))
        return enriched


def _adf_run_json(run: Any) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "pipelineName": run.pipeline,
        "status": run.status,
        "runGroupId": run.run_group_id,
        "isLatest": run.is_latest,
        "message": run.message,
        "runStart": run.run_start,
        "lastUpdated": run.last_updated,
    }


def _as_failure(alert: Alert, detail: str) -> Alert:
    return replace(
        alert, signal=Signal.FAILURE.value, message=(alert.message + " " + detail).strip()
    )


def register(topology: Topology, platforms: Platforms, classifier: Classifier) -> None:
    enricher = Enricher(topology, platforms, classifier)

    @topology.app.agent(topology.enrich, name="enrich", **CRASH_WORKER)
    async def enrich(stream: Any) -> None:
        await run_concurrently(
            topology,
            stream,
            topology.settings.executor_concurrency,
            enricher,
            lane=routing.ENRICH,
        )
