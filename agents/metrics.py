"""What a worker has seen and done, as Prometheus counters on ``GET /metrics``; whether it is
ready to work, on ``GET /ready``.

Counted where it happens: ingest counts every record of every raw message by shape and by
what became of it (passed on as an alert, dropped as needing no action, invalid, ignored as
outside the estate) and the failures it passed on by source; the executors count steps by
action and result; every audit row sent is counted by state. What a worker holds right now
(records waiting in the delay tiers, open circuit breakers, chains waiting for approval,
storms, consumer lag) is read from the stage that holds it when ``/metrics`` is scraped
(:class:`LiveGauges`). Per worker and since its start, as Prometheus counters are: the scraper
sums workers and takes rates.

Ready means: joined to its consumer group with partitions assigned, tables recovered from
their changelogs, no rebalance under way. Orchestrators probe it (readiness, not liveness: a
worker waiting for a rebalance is alive), and the tests wait on it instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
SPEND = Gauge(
    "pipemedic_daily_spend_usd",
    "Today's estimated spend reserved by admitted actions, on the worker that owns admission "
    "(0 on the others)",
)
CAP = Gauge("pipemedic_daily_cost_cap_usd", "The daily cost cap (0: none)")
SINK_ROWS = Counter(
    "pipemedic_sink_rows_written",
    "Outcome rows the sink stored in ClickHouse (replays included: they collapse there)",
)
SINK_LAG = Gauge(
    "pipemedic_sink_lag_seconds",
    "Seconds from the newest stored outcome message's broker timestamp to its rows being stored",
)
OUTCOME_ROWS = Counter(
    "pipemedic_outcome_rows",
    "Audit rows sent to the outcomes topic, by state: chain transitions (scheduled, executed, "
    "resolved, manual, awaiting_approval, ...), deliveries to people (notified, "
    "notify_failed), storms, pauses",
    ("state",),
)

# what a worker holds right now, read when /metrics is scraped: labels -> value
Reading = Callable[[], Mapping[tuple[str, ...], float]]


class LiveGauges(Collector):
    """Gauges read at scrape time from the stages that hold the state (delay tiers, breakers,
    tables, the consumer's offsets), so nothing has to keep them up to date."""

    def __init__(self) -> None:
        self.readings: dict[str, tuple[str, tuple[str, ...], Reading]] = {}

    def add(self, name: str, doc: str, labels: tuple[str, ...], read: Reading) -> None:
        self.readings[name] = (doc, labels, read)  # a worker built again replaces its own

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (doc, labels, read) in self.readings.items():
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            try:
                values = read()
            except Exception:  # a stage rebuilding its state: this scrape goes without it
                continue
            for key, value in values.items():
                family.add_metric(list(key), float(value))
            yield family


LIVE = LiveGauges()
REGISTRY.register(LIVE)


def consumer_lag(app: Any) -> dict[tuple[str, ...], float]:
    """Records not yet committed, per topic this worker reads: its partitions' end offsets
    less their committed offsets, as Faust's monitor last saw them."""
    monitor = app.monitor
    ends = monitor.tp_end_offsets or {}
    committed = monitor.tp_committed_offsets or {}
    lag: dict[tuple[str, ...], float] = {}
    for tp, end in ends.items():
        key = (tp.topic,)
        lag[key] = lag.get(key, 0.0) + max(end - committed.get(tp, 0), 0)
    return lag


def count_ingested(shape: str, counts: Mapping[str, int], alerts: tuple[Alert, ...]) -> None:
    """One raw message: its records by what became of them (``message_counts``) and the
    failures among its ``alerts``."""
    MESSAGES.labels("ok").inc()
    for outcome, name in (
        ("alert", "alerts"),
        ("ignored", "ignored"),
        ("dropped", "dropped"),
        ("invalid", "invalid"),
    ):
        if counts[name]:
            RECORDS.labels(shape, outcome).inc(counts[name])
    for alert in alerts:
        if alert.signal == Signal.FAILURE.value:
            FAILURES.labels(alert.source).inc()


def register(topology: Topology, spend: Any = None, *, cap_usd: float = 0.0) -> None:
    """``spend``: the admission stage (its ``spent_usd()``: today's reserved spend, as this
    worker's copy of the admission table holds it)."""
    CAP.set(max(cap_usd, 0.0))
    if spend is not None:
        SPEND.set_function(spend.spent_usd)
    LIVE.add(
        "pipemedic_consumer_lag",
        "Records on this worker's partitions not yet committed, by topic",
        ("topic",),
        lambda: consumer_lag(topology.app),
    )

    @topology.app.page("/metrics", name="metrics")
    class Metrics(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            # as a header: aiohttp refuses a content_type argument that carries a charset
            headers = {"Content-Type": CONTENT_TYPE_LATEST}
            return self.bytes(generate_latest(REGISTRY), headers=headers)

    @topology.app.page("/ready", name="ready")
    class Ready(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            ready, reason = is_ready(topology.app)
            return self.json({"ready": ready, "reason": reason}, status=200 if ready else 503)


def is_ready(app: Any) -> tuple[bool, str]:
    """Can this worker take work now? With the reason when it cannot."""
    if app.rebalancing:
        return False, "rebalancing"
    if app.in_recovery or not app.tables.recovery.completed.is_set():
        return False, "recovering tables"
    if not app.consumer.assignment():
        return False, "no partitions assigned yet"
    return True, "ready"
