"""Build and run one pipemedic worker: the Faust app, every agent, the platform clients.

``pipemedic worker`` runs this with settings from ``PIPEMEDIC_*`` environment variables.
The tier topics depend on the configured schedules, so :func:`planned_topics` is what topic
pre-creation and the worker both use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents import chains, dedup, delay, ingest
from streams.app import Topology, build_topology, changelog_topics
from streams.policy import backoff, routing
from streams.policy.rules import DEFAULT_RULES, DEFAULT_SCHEDULES, load_rules
from streams.settings import Settings


def load_rulebook(rules_file: Path | None) -> tuple[Any, Any]:
    if rules_file is None:
        return DEFAULT_RULES, DEFAULT_SCHEDULES
    return load_rules(rules_file)


def plan_tiers(settings: Settings, schedules: Any) -> tuple[int, ...]:
    return backoff.derive_tiers(_schedule_delays(schedules), extra=settings.internal_delays_s())


def planned_topics(settings: Settings) -> tuple[str, ...]:
    """Every topic a worker with these settings uses, Faust's changelogs included."""
    _, schedules = load_rulebook(settings.rules_file)
    return (*routing.all_topics(plan_tiers(settings, schedules)), *changelog_topics(settings))


def build_worker(settings: Settings) -> Topology:
    rulebook = load_rulebook(settings.rules_file)
    topology = build_topology(settings, plan_tiers(settings, rulebook[1]))
    ingest.register(topology, rulebook)
    dedup.register(topology)
    chains.register(topology)
    delay.register(topology)
    return topology


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    import faust

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    topology = build_worker(settings)
    worker = faust.Worker(topology.app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()


def _schedule_delays(schedules: Any) -> list[tuple[float, ...]]:
    values = schedules.values() if hasattr(schedules, "values") else schedules
    return [tuple(getattr(s, "delays_s", s)) for s in values]
