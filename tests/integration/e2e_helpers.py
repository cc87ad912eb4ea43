"""What the executor scenarios need around an :class:`EmbeddedStack`: raw alerts in the shapes
the platforms send, a playbook webhook on loopback, direct deliveries onto action topics, an
ARM caller playing an upstream scheduler, and the stack's results read back once settled.

The alert builders take their shapes from ``pipemedic/data/demo/alerts.jsonl`` (Azure Monitor
log alert v2, ADF diagnostic records, Databricks webhooks and cluster events) and put in the
ids of a scenario; ``${now}`` placeholders are filled in by ``EmbeddedStack.send_raw``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipemedic.demo import Watch, watch_until_settled
from pipemedic.reporting import clickhouse_config, read_report
from pipemedic.simulator import Call
from pipemedic.stack import DEMO_DATA, EmbeddedStack
from pipemedic.worker import planned_topics
from streams.adapters.clickhouse import open_store
from streams.codecs import decode_items, encode
from streams.policy import routing
from streams.policy.model import ActionRequest

# ---- raw alerts ------------------------------------------------------------------------------

RECENTLY_MS = "${now-5m:ms}"  # an epoch-ms time five minutes before sending


def _demo_shape(wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """A copy of the first demo alert that ``wanted`` accepts."""
    for line in (DEMO_DATA / "alerts.jsonl").read_text().splitlines():
        try:
            alert = json.loads(line)
        except ValueError:
            continue
        if isinstance(alert, dict) and wanted(alert):
            return copy.deepcopy(alert)
    raise LookupError("the demo alerts have no such shape")


def _raw(payload: dict[str, Any]) -> bytes:
    """JSON bytes; an epoch-ms placeholder stands unquoted, so it becomes a number."""
    return re.sub(r'"(\$\{now[^}]*:ms\})"', r"\1", json.dumps(payload)).encode()


def adf_log_alert(
    *,
    factory: str,
    alert_no: str,
    run_id: str,
    pipeline: str,
    activity: str,
    message: str,
    subscription: str,
    resource_group: str,
) -> bytes:
    """An Azure Monitor log alert (common schema, LogQueryCriteria) on ``ADFActivityRun``."""
    alert = _demo_shape(
        lambda a: (
            a.get("data", {}).get("alertContext", {}).get("conditionType") == "LogQueryCriteria"
        )
    )
    resource = (
        f"/subscriptions/{subscription}/resourcegroups/{resource_group}"
        f"/providers/microsoft.datafactory/factories/{factory}"
    )
    essentials = alert["data"]["essentials"]
    essentials["alertId"] = (
        f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/{alert_no}"
    )
    essentials |= {
        "alertTargetIDs": [resource],
        "configurationItems": [factory],
        "firedDateTime": "${now}",
    }
    condition = alert["data"]["alertContext"]["condition"]
    condition |= {"windowStartTime": "${now-5m}", "windowEndTime": "${now}"}
    facts = {
        "RunId": run_id,
        "PipelineName": pipeline,
        "ActivityName": activity,
        "ErrorMessage": message,
        "_ResourceId": resource,
    }
    for dimension in condition["allOf"][0]["dimensions"]:
        dimension["value"] = facts.get(dimension["name"], dimension["value"])
    return _raw(alert)


def adf_activity_record(
    *,
    factory: str,
    run_id: str,
    pipeline: str,
    activity: str,
    message: str,
    subscription: str,
    resource_group: str,
    error_code: str = "2200",
) -> bytes:
    """ADF diagnostic settings streamed to Event Hubs: one failed ``ActivityRuns`` record."""
    shape = _demo_shape(lambda a: a.get("records", [{}])[0].get("category") == "ActivityRuns")
    record = shape["records"][0]
    error = json.loads(record["properties"]["Error"])
    error |= {"errorCode": error_code, "message": message, "target": activity}
    record |= {
        "time": "${now-1m}",
        "start": "${now-3m}",
        "end": "${now-1m}",
        "activityRunId": f"act-{run_id[:8]}",
        "pipelineRunId": run_id,
        "pipelineName": pipeline,
        "activityName": activity,
        "operationName": f"{activity} - Failed",
        "resourceId": (
            f"/SUBSCRIPTIONS/{subscription}/RESOURCEGROUPS/{resource_group}"
            f"/PROVIDERS/MICROSOFT.DATAFACTORY/FACTORIES/{factory}"
        ).upper(),
    }
    record["properties"]["Error"] = json.dumps(error)
    return _raw({"records": [record]})


def cluster_terminated(*, workspace: str, cluster_id: str, name: str) -> bytes:
    """A Databricks ``cluster.terminated`` notification: the driver became unreachable."""
    alert = _demo_shape(lambda a: a.get("event") == "cluster.terminated")
    alert |= {"workspace_id": workspace, "timestamp": RECENTLY_MS}
    alert["cluster"] |= {"cluster_id": cluster_id, "cluster_name": name}
    return _raw(alert)


def driver_not_responding(*, workspace: str, cluster_id: str) -> bytes:
    """A page of Databricks cluster events with one ``DRIVER_NOT_RESPONDING``."""
    page = _demo_shape(lambda a: a.get("events", [{}])[0].get("type") == "DRIVER_NOT_RESPONDING")
    page["workspace_id"] = workspace
    page["events"][0] |= {"cluster_id": cluster_id, "timestamp": RECENTLY_MS}
    return _raw(page)


def library_install_failed(*, workspace: str, cluster_id: str, name: str, package: str) -> bytes:
    alert = _demo_shape(lambda a: a.get("event") == "library.install_failed")
    alert |= {
        "workspace_id": workspace,
        "timestamp": RECENTLY_MS,
        "cluster": {"cluster_id": cluster_id, "cluster_name": name},
        "library": {"pypi": {"package": package}},
        "error_message": f"Could not find a version that satisfies the requirement {package}",
    }
    return _raw(alert)


def job_failed(*, workspace: str, run_id: int, job_id: int, name: str) -> bytes:
    """A Databricks job ``on_failure`` webhook: no error detail, so enrichment reads the run."""
    alert = _demo_shape(lambda a: a.get("event_type") == "jobs.on_failure" and "task" not in a)
    alert |= {
        "workspace_id": workspace,
        "run": {"run_id": str(run_id)},
        "job": {"job_id": str(job_id), "name": name},
    }
    return _raw(alert)


# ---- a playbook webhook ----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any
    at: float


class PlaybookReceiver:
    """A webhook on loopback that records every POST and answers ``answer`` as JSON."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.answer = answer or {"accepted": True}
        self.deliveries: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.deliveries.append(
                    Delivery(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw or b"null"),
                        time.time(),
                    )
                )
                body = json.dumps(receiver.answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{path.lstrip('/')}"

    def __enter__(self) -> PlaybookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---- talking to the simulator as someone else ------------------------------------------------


SCHEDULER = "upstream-scheduler"


class ArmCaller:
    """Another ARM client (an upstream scheduler, say), with its own token."""

    def __init__(self, stack: EmbeddedStack) -> None:
        aad = stack.world.azure_ad
        self.url = stack.simulator.url
        self._form = {
            "grant_type": "client_credentials",
            "client_id": aad.client_id,
            "client_secret": aad.client_secret,
            "scope": "https://management.azure.com/.default",
        }
        self._token_url = f"{self.url}/{aad.tenant_id}/oauth2/v2.0/token"
        self._factories = {f.name: f for f in stack.world.factories}

    def start_run(self, factory: str, pipeline: str) -> str:
        """A plain ``createRun`` (a scheduled run, not a recovery) of ``pipeline``."""
        ref = self._factories[factory]
        # tagged, so tests that count the worker's token refreshes can leave this one out
        token = httpx.post(self._token_url, data=self._form, params={"caller": SCHEDULER})
        token = token.json()["access_token"]
        answer = httpx.post(
            f"{self.url}/subscriptions/{ref.subscription}/resourceGroups/{ref.resource_group}"
            f"/providers/Microsoft.DataFactory/factories/{factory}/pipelines/{pipeline}/createRun",
            params={"api-version": "2018-06-01"},
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        return answer.json()["runId"]


def databricks_get(stack: EmbeddedStack, workspace: str, api: str, **params: Any) -> dict[str, Any]:
    """A read-only Databricks REST call, e.g. to see where a cluster's libraries ended up."""
    spec = next(w for w in stack.world.workspaces if w.workspace_id == workspace)
    answer = httpx.get(
        f"{stack.simulator.url}/databricks/{workspace}/api/{api}",
        params=params,
        headers={"Authorization": f"Bearer {spec.token}"},
    )
    answer.raise_for_status()
    return answer.json()


# ---- action records --------------------------------------------------------------------------


async def scheduled_requests(
    stack: EmbeddedStack, wanted: Iterable[tuple[str, int]], timeout_s: float = 90.0
) -> list[ActionRequest]:
    """The execute request each (chain id, attempt) of ``wanted`` was scheduled, read off the
    delay tier it waited in (records stay there after they fired), in the order asked."""
    wanted = list(wanted)
    found: dict[tuple[str, int], ActionRequest] = {}
    tiers = [t for t in planned_topics(stack.settings) if t.startswith("delay")]
    consumer = AIOKafkaConsumer(
        *tiers,
        bootstrap_servers=stack.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < len(set(wanted)) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for message in (m for ms in batches.values() for m in ms):
                for item in decode_items("action_request", message.value):
                    request = ActionRequest.from_dict(item)
                    key = (request.chain_id, request.attempt)
                    if request.step == "execute" and key in wanted:
                        found.setdefault(key, request)
    finally:
        await consumer.stop()
    missing = [key for key in wanted if key not in found]
    assert not missing, f"no execute request for {missing} within {timeout_s}s"
    return [found[key] for key in wanted]


async def deliver(stack: EmbeddedStack, requests: Iterable[ActionRequest], copies: int = 1) -> None:
    """Put ``copies`` of each request, due now, straight onto its action topic."""
    assert stack.settings is not None
    profile = stack.settings.topic_profile
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        sent = []
        for request in requests:
            due = replace(request, tier="", hop_due_at=0, due_at=int(time.time() * 1000))
            value = encode("action_request", due.to_dict())
            topic, headers = routing.destination(routing.action_topic(request.action), profile)
            for _ in range(copies):
                key = request.chain_id.encode()
                sent.append(await producer.send(topic, value, key=key, headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


# ---- waiting and reading back ----------------------------------------------------------------


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class Settled:
    """Everything a scenario asserts on, captured once the stack has settled."""

    watch: Watch
    calls: list[Call]
    chains: dict[str, dict[str, Any]]  # chain id -> chain_summaries row
    rows: list[dict[str, Any]] = field(default_factory=list)  # every outcome row, by time

    def calls_to(self, method: str, pattern: str, status: int | None = None) -> list[Call]:
        import fnmatch

        return [
            c
            for c in self.calls
            if c.method == method
            and fnmatch.fnmatchcase(c.path, pattern)
            and (status is None or c.status == status)
        ]

    def rows_of(self, chain_id: str, state: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["chain_id"] == chain_id and state in (None, r["state"])]


def settle(stack: EmbeddedStack, timeout_s: float) -> Settled:
    """Follow the outcomes until every chain is final, stop the worker (the sink flushes)
    and read the audit trail back from chDB."""
    watch = asyncio.run(watch_until_settled(stack, timeout_s))
    stack.stop_worker()
    calls = stack.simulator.calls
    _, _, chains = read_report(stack.settings)
    store = open_store(clickhouse_config(stack.settings))
    try:
        rows = store.query(
            "SELECT chain_id, state, scope, attempt, action, detail, new_run_id, platform_status,"
            " toUnixTimestamp64Milli(at) AS at FROM pipemedic.outcomes FINAL ORDER BY at"
        )
    finally:
        store.close()
    return Settled(watch, calls, {c["chain_id"]: c for c in chains}, rows)
