"""Ingest normalisation: one Kafka message in, zero or more canonical :class:`Alert` out.

The shape is told by its top-level keys (first match wins):

==============================================  ==============================================
``records``                                     ADF diagnostic-log batch (Event Hubs), <= 1 MB
``schemaId``                                    Azure Monitor common alert schema, <= 256 KB
``data`` (no schemaId)                          the same envelope, e.g. the matrix doc's curl test
``event_type``                                  Databricks job/task notification webhook
``event``                                       relayed ``cluster.terminated`` / ``library.install_failed``
``library_statuses``                            Libraries API ``cluster-status``
``events``, or ``type`` + ``cluster_id``        Clusters API events (a list <= 1 MB, or one event)
``cluster_id`` + ``termination_reason``         a ``clusters/get`` body
==============================================  ==============================================

Bad input raises :class:`NormalizeError` (``reason``: ``not_json``, ``too_large``,
``unknown_shape``, ``unknown_schema_id``, ``unknown_event_type``, ``missing_run_id``,
``missing_cluster_id``, ``missing_factory``, ``wrong_type:<field>``, ``bad_value:<field>``);
nothing else escapes. An empty list is a normal answer: a Resolved alert, a heartbeat, an
in-progress or cancelled run, a normal cluster termination, an activity success or an
ignored category/event. :func:`normalize_detailed` says why (one skip reason per ignored
entry) so the caller can count them; :func:`normalize` is the same without the reasons.

In a batch (records, result rows, events, library statuses) a malformed entry is reported
as an ``invalid:<reason>`` skip while its neighbours still yield alerts; only a batch in
which nothing yields an alert raises, so the raw message can be dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from streams.policy import normalize_adf as adf
from streams.policy import normalize_azure as azure
from streams.policy import normalize_databricks as databricks
from streams.policy import normalize_databricks_run as databricks_run
from streams.policy.model import Alert, Signal
from streams.policy.normalize_base import MAX_ALERT_BYTES, MAX_BATCH_BYTES, NormalizeError

__all__ = [
    "NormalizeError",
    "Normalized",
    "alerts_from_adf_runs",
    "alerts_from_databricks_run",
    "normalize",
    "normalize_detailed",
    "unmatched_alert",
]

UNMATCHED = "unmatched"  # the error code (and code source) of a metric alert that found no run

_BOM = b"\xef\xbb\xbf"

Parser = Callable[[Mapping[str, Any], int, list[str]], list[Alert]]


@dataclass(frozen=True)
class Normalized:
    alerts: tuple[Alert, ...]
    skipped: tuple[str, ...]  # why entries gave no alert: "resolved", "in_progress", ...
    shape: str = ""  # what arrived (a SHAPES value): the label records are counted under


def _parser(payload: Mapping[str, Any]) -> tuple[Parser, int]:
    """The parser for this shape and the size cap that applies to it."""
    if "records" in payload:
        return adf.diagnostic_records, MAX_BATCH_BYTES
    if "schemaId" in payload:
        if payload["schemaId"] != azure.COMMON_SCHEMA:
            raise NormalizeError("unknown_schema_id", str(payload["schemaId"])[:80])
        return azure.common_alert, MAX_ALERT_BYTES
    if "data" in payload:
        return azure.common_alert, MAX_ALERT_BYTES
    if "event_type" in payload:
        return databricks.job_webhook, MAX_ALERT_BYTES
    if "event" in payload:
        return databricks.event_payload, MAX_ALERT_BYTES
    if "library_statuses" in payload:
        return databricks.library_statuses, MAX_ALERT_BYTES
    if "events" in payload:
        return databricks.cluster_events, MAX_BATCH_BYTES
    if "cluster_id" in payload and "type" in payload:
        return databricks.cluster_events, MAX_ALERT_BYTES
    if "cluster_id" in payload and "termination_reason" in payload:
        return databricks.cluster_state, MAX_ALERT_BYTES
    raise NormalizeError("unknown_shape", ",".join(sorted(str(k)[:40] for k in payload)[:8]))


SHAPES: Mapping[Parser, str] = {
    adf.diagnostic_records: "adf_diagnostic",
    azure.common_alert: "azure_monitor",
    databricks.job_webhook: "databricks_webhook",
    databricks.event_payload: "databricks_event",
    databricks.library_statuses: "databricks_libraries",
    databricks.cluster_events: "databricks_cluster_events",
    databricks.cluster_state: "databricks_cluster",
}


def normalize_detailed(raw: bytes, *, received_at_ms: int) -> Normalized:
    """Alerts plus the skip reasons for everything in the message that yielded none."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    elif isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    elif not isinstance(raw, bytes):
        raise NormalizeError("wrong_type:raw")
    if len(raw) > MAX_BATCH_BYTES:
        raise NormalizeError("too_large", str(len(raw)))
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        # the stdlib, not orjson: orjson 3.8 segfaults on deeply nested objects, and this is
        # untrusted input (tests/unit/test_normalize_errors.py keeps the case)
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise NormalizeError("not_json", type(exc).__name__) from None
    if not isinstance(payload, dict):
        raise NormalizeError("unknown_shape", type(payload).__name__)
    skips: list[str] = []
    try:
        parse, cap = _parser(payload)
        if len(raw) > cap:
            raise NormalizeError("too_large", str(len(raw)))
        alerts = parse(payload, received_at_ms, skips)
    except NormalizeError:
        raise
    except Exception as exc:  # a bug here must not stop the agent; tests assert it never fires
        raise NormalizeError(f"unexpected:{type(exc).__name__}", str(exc)[:200]) from exc
    return Normalized(tuple(alerts), tuple(skips), SHAPES[parse])


def normalize(raw: bytes, *, received_at_ms: int) -> list[Alert]:
    """One Kafka message in, zero or more canonical alerts out (see the module docstring)."""
    return list(normalize_detailed(raw, received_at_ms=received_at_ms).alerts)


def alerts_from_databricks_run(
    webhook: Alert,
    run: Mapping[str, Any],
    *,
    received_at_ms: int,
    outputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Alert]:
    """Turn a ``jobs/runs/get`` body fetched for an ENRICH webhook alert into alerts.

    ``outputs`` optionally maps a task run id to its ``jobs/runs/get-output`` body; its
    ``error``/``error_trace`` then replace the generic task ``state_message`` as the message.
    """
    try:
        return databricks_run.databricks_run(webhook, run, received_at_ms, [], outputs)
    except NormalizeError:
        raise
    except Exception as exc:
        raise NormalizeError(f"unexpected:{type(exc).__name__}", str(exc)[:200]) from exc


def alerts_from_adf_runs(
    metric: Alert,
    runs: Sequence[Mapping[str, Any]],
    *,
    received_at_ms: int,
) -> list[Alert]:
    """Turn ``queryPipelineRuns`` results (Failed, LatestOnly) for an ENRICH alert into failures."""
    try:
        return adf.adf_runs(metric, runs, received_at_ms, [])
    except NormalizeError:
        raise
    except Exception as exc:
        raise NormalizeError(f"unexpected:{type(exc).__name__}", str(exc)[:200]) from exc


def unmatched_alert(alert: Alert, start_ms: int, end_ms: int) -> Alert:
    """A metric alert whose window holds no failed run: a failure of its own kind
    (``Unmatched``, never automated), so it ends handed to people with the reason."""
    what = f"of {alert.pipeline}" if alert.pipeline else f"in {alert.scope}"
    why = f"unmatched: no failed run {what} between {_hhmm(start_ms)} and {_hhmm(end_ms)} UTC"
    return replace(
        alert,
        signal=Signal.FAILURE.value,
        error_code=UNMATCHED,
        message=(why + " " + alert.message).strip(),
        details={**alert.details, "code_source": UNMATCHED},
    )


def _hhmm(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).strftime("%H:%M")
