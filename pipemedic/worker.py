"""Build and run one pipemedic worker: the Faust app, every agent, the platform clients.

``pipemedic worker`` runs this with settings from ``PIPEMEDIC_*`` environment variables.
The tier topics depend on the configured schedules, so :func:`planned_topics` is what topic
pre-creation and the worker both use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agents import (
    admission,
    chains,
    control,
    dedup,
    delay,
    enrich,
    execute,
    ingest,
    metrics,
    rebalance,
    record,
    webhooks,
)
from agents import approvals as approval_links
from agents import notify as notify_stage
from agents.platforms import Platforms
from pipemedic.reporting import clickhouse_config
from streams.adapters.clickhouse import OutcomeWriter, open_store
from streams.app import Topology, build_topology, changelog_topics
from streams.estate import Estate, load_estate
from streams.policy import backoff, routing
from streams.policy.admission import AdmissionPolicy
from streams.policy.model import Action
from streams.policy.pauses import Pauses
from streams.policy.rollout import Rollout
from streams.policy.rules import (
    DEFAULT_RULES,
    DEFAULT_SCHEDULES,
    Classifier,
    load_limits,
    load_rollout,
    load_rules,
)
from streams.policy.scope import EstateScope
from streams.settings import Settings

log = logging.getLogger(__name__)


def load_rulebook(rules_file: Path | None) -> tuple[Any, Any]:
    if rules_file is None:
        return DEFAULT_RULES, DEFAULT_SCHEDULES
    return load_rules(rules_file)


def plan_tiers(settings: Settings, schedules: Any) -> tuple[int, ...]:
    return backoff.derive_tiers(_schedule_delays(schedules), extra=settings.internal_delays_s())


def planned_topics(settings: Settings) -> tuple[str, ...]:
    """Every topic a worker with these settings uses, Faust's changelogs included."""
    _, schedules = load_rulebook(settings.rules_file)
    tiers = plan_tiers(settings, schedules)
    topics = routing.all_topics(tiers, settings.topic_prefix, settings.topic_profile)
    return (*topics, *changelog_topics(settings))


def build_platforms(settings: Settings, estate: Estate) -> Platforms:
    from streams.adapters.adf import ADFClient
    from streams.adapters.credentials import Credentials
    from streams.adapters.databricks import DatabricksClient
    from streams.adapters.http import http_client
    from streams.adapters.playbook import PlaybookClient
    from streams.policy.throttle import Rate

    ca_bundle = str(settings.ca_bundle) if settings.ca_bundle else None
    http = http_client(
        max_connections=settings.executor_concurrency,
        timeout_s=settings.http_timeout_s,
        ca_bundle=ca_bundle,
    )
    credentials = Credentials(
        estate.credentials, ca_bundle=ca_bundle, timeout_s=settings.http_timeout_s
    )
    adf = ADFClient(estate.adf, credentials.credential_for, http) if estate.adf.factories else None
    dbx = None
    if estate.databricks.workspaces:
        dbx = DatabricksClient(
            estate.databricks,
            credential_for=credentials.credential_for,
            reads=Rate(settings.databricks_reads_per_s, settings.databricks_reads_per_s),
            writes=Rate(settings.databricks_writes_per_s, settings.databricks_writes_per_s),
        )
    books = PlaybookClient(estate.playbooks, http) if estate.playbooks.urls else None
    return Platforms(estate=estate, adf=adf, databricks=dbx, playbooks=books)


def build_worker(settings: Settings) -> Topology:
    rulebook = load_rulebook(settings.rules_file)
    caps, storms = load_limits(settings.rules_file)
    admits = bool(caps or storms or settings.daily_cost_cap_usd > 0)
    topology = build_topology(settings, plan_tiers(settings, rulebook[1]), admits=admits)
    estate = load_estate(settings.estate_file, timeout_s=settings.http_timeout_s)
    platforms = build_platforms(settings, estate)
    writer = OutcomeWriter(open_store(clickhouse_config(settings)))
    classifier = Classifier(*rulebook)
    ingest.register(
        topology, classifier, EstateScope.of(estate.adf.factories, estate.databricks.workspaces)
    )
    enrich.register(topology, platforms, classifier)
    rollout = Rollout(
        rows=load_rollout(settings.rules_file), default_mode=settings.mode, target_tags=estate.tags
    )
    chain_stage = chains.register(
        topology, page_hook=Action.MANUAL.value in estate.playbooks.urls, rollout=rollout
    )
    dedup.register(topology, chain_stage)  # moves the chains of its own partitions itself
    delay.register(topology)
    spend = None
    if admits:  # caps, storms and the budget hold across workers: one partition decides
        policy = AdmissionPolicy(
            budget_usd=settings.daily_cost_cap_usd,
            action_cost_usd=dict(settings.action_cost_usd),
            caps=caps,
            storms=storms,
            recheck_s=settings.admission_recheck_s,
            probe_s=settings.storm_probe_s,
            release_per_s=settings.storm_release_per_s,
            target_tags=estate.tags,
        )
        spend = admission.register(topology, policy)
    # the kill switch: every worker follows the control topic whole
    pauses = Pauses()
    control.register(topology, pauses)
    execute.register(topology, platforms, pauses)
    record.register(topology, writer)
    notify_stage.register(topology, estate)
    approval_links.register(topology)
    webhooks.register(topology)
    metrics.register(topology, spend, cap_usd=settings.daily_cost_cap_usd)
    rebalance.register(topology)
    return topology


def use_event_loop(settings: Settings) -> str:
    """Install the configured event loop before Faust creates one; returns the one in use."""
    if settings.event_loop != "uvloop":
        return "asyncio"
    try:
        import mode.loop

        mode.loop.use("uvloop")
    except ImportError:  # not installed (no wheels for Windows): plain asyncio still works
        log.warning("event_loop=uvloop but uvloop is not installed; using asyncio")
        return "asyncio"
    return "uvloop"


def run_worker(settings: Settings, *, loglevel: str | None = None) -> None:
    import asyncio
    import logging.config

    import faust

    from pipemedic.logs import logging_config

    level = (loglevel or settings.log_level).upper()
    logs = logging_config(level, settings.log_format)
    logging.config.dictConfig(logs)  # what is logged while the worker is built, too
    loop_name = use_event_loop(settings)  # before anything asks asyncio for a loop

    # one line per platform call (azure-identity: per token lookup, cached or not) drowns what
    # matters; outcomes are in ClickHouse anyway
    for noisy in ("httpx", "databricks.sdk", "urllib3", "azure.identity", "azure.core"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from pipemedic.tansu import apply_broker_workarounds

    apply_broker_workarounds(settings)
    topology = build_worker(settings)

    @topology.app.task
    async def tell_loop() -> None:  # a start-up task: Faust's logging is set up by then
        log.info("event loop: %s (%s)", loop_name, type(asyncio.get_running_loop()).__name__)
        from pipemedic import taskdump

        taskdump.install(asyncio.get_running_loop())  # kill -USR2: each task's await chain

    # Faust (mode) sets up the root logger again as it starts: ours instead of its own
    worker = faust.Worker(topology.app, loglevel=level, quiet=True, logging_config=logs)
    worker.execute_from_commandline()


def _schedule_delays(schedules: Any) -> list[tuple[float, ...]]:
    values = schedules.values() if hasattr(schedules, "values") else schedules
    return [tuple(getattr(s, "delays_s", s)) for s in values]
