"""What a worker has seen and done, as Prometheus counters on ``GET /metrics``.

Counted where it happens: ingest counts every record of every raw message by shape and by
what became of it (passed on as an alert, dropped as needing no action, invalid, ignored as
outside the estate) and the failures it passed on by source; the executors count steps by
action and result. Per worker and since its start, as Prometheus counters are: the scraper
sums workers and takes rates.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

from streams.app import Topology
from streams.policy.model import Alert, Signal

RECORDS = Counter(
    "pipemedic_ingest_records",
    "Records in raw messages, by shape and by what became of them",
    ("shape", "outcome"),  # outcome: alert | dropped | invalid | ignored
)
MESSAGES = Counter(
    "pipemedic_ingest_messages", "Raw messages taken, by result", ("result",)
)  # result: ok | dead_letter
FAILURES = Counter(
    "pipemedic_ingest_failures", "Failures passed on to dedup, by source", ("source",)
)
STEPS = Counter(
    "pipemedic_steps",
    "Remediation steps run by the executors, by action and result",
    ("action", "step", "result"),
)


def count_ingested(
    shape: str, alerts: tuple[Alert, ...], skipped: tuple[str, ...], ignored: int
) -> None:
    MESSAGES.labels("ok").inc()
    invalid = sum(1 for reason in skipped if reason.startswith("invalid:"))
    for outcome, n in (
        ("alert", len(alerts) - ignored),
        ("ignored", ignored),
        ("dropped", len(skipped) - invalid),
        ("invalid", invalid),
    ):
        if n:
            RECORDS.labels(shape, outcome).inc(n)
    for alert in alerts:
        if alert.signal == Signal.FAILURE.value:
            FAILURES.labels(alert.source).inc()


def register(topology: Topology) -> None:
    @topology.app.page("/metrics", name="metrics")
    class Metrics(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            # as a header: aiohttp refuses a content_type argument that carries a charset
            headers = {"Content-Type": CONTENT_TYPE_LATEST}
            return self.bytes(generate_latest(REGISTRY), headers=headers)
