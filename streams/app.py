"""The one Faust app and its topology: topics, codecs and tables.

Topic names come from :mod:`streams.policy.routing`; delay tiers are derived from the
configured schedules, so the app is built from settings at start-up rather than at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from streams.broker import client_settings
from streams.clock import Clock, SystemClock
from streams.policy import backoff, routing
from streams.policy.model import Action
from streams.settings import Settings

# Faust's slow-processing warnings and commit livelock checks must outlast the longest hold
# in a delay tier: a held record is waiting on purpose, not stuck.
_HOLD_MARGIN_S = 60.0


@dataclass
class Topology:
    app: faust.App
    settings: Settings
    tiers: tuple[int, ...]
    raw: Any
    enrich: Any
    classified: Any
    chain_events: Any
    outcomes: Any
    dead_letter: Any
    actions: dict[str, Any]  # action value -> topic
    delays: dict[int, Any]  # tier seconds -> topic
    dedup: Any  # Table: dedup key -> DedupEntry dict
    chains: Any  # Table: chain id -> Chain dict
    notify: Any = None  # topic: notifications (ActionRequests of action "notify")
    notices: Any = None  # Table: chain id -> what people were told (streams/policy/notices.py)
    # new actions pass admission when caps, storms or a budget are set (agents/admission.py)
    admission: Any = None  # topic, every item keyed by ADMISSION_KEY
    admissions: Any = None  # Table: counters (caps, budget, storms)
    clock: Clock = field(default_factory=SystemClock)  # every agent's time and timers

    def action_topic(self, action: str) -> Any:
        if action == routing.NOTIFY:
            return self.notify
        return self.actions[action]

    def topic_named(self, name: str) -> Any:
        for topic in (*self.actions.values(), *self.delays.values()):
            if topic.get_topic_name() == name:
                return topic
        raise KeyError(name)


def create_app(settings: Settings, tiers: tuple[int, ...]) -> faust.App:
    longest_hold = float(max(tiers, default=0)) + _HOLD_MARGIN_S
    options: dict[str, Any] = {
        "broker": settings.broker_url,
        # credentials, idle and metadata ages, request size: as every other client
        **client_settings(settings).faust_options(),
        "datadir": str(settings.faust_dir),
        "store": "memory://",
        "topic_partitions": settings.partitions,
        "topic_disable_leader": True,
        "broker_session_timeout": settings.broker_session_timeout_s,
        "broker_heartbeat_interval": max(0.5, settings.broker_session_timeout_s / 6),
        "broker_commit_interval": settings.broker_commit_interval_s,
        "stream_processing_timeout": max(300.0, longest_hold),
        "broker_commit_livelock_soft_timeout": max(300.0, longest_hold),
        "web_host": settings.web_host,
        "web_bind": settings.web_host,  # listen where configured, not on every interface
        "web_port": settings.web_port,
        # Faust's own pages have no auth (the table pages would show dedup and chain state)
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_in_thread": False,
        "table_cleanup_interval": 60.0,
        # a delay tier holds records unacknowledged on purpose; stopping or rebalancing must
        # not wait for them (they are redelivered from the last commit, and every stage
        # downstream is idempotent)
        "stream_wait_empty": False,
        "producer_linger": settings.producer_linger_s,
        "producer_max_batch_size": settings.producer_max_batch_bytes,
        # Event Hubs closes idle connections after 240 s
        "broker_request_timeout": 90.0,
    }
    return faust.App(routing.group_id(settings.app_id, settings.topic_prefix), **options)


def build_topology(settings: Settings, tiers: tuple[int, ...], *, admits: bool = False) -> Topology:
    """``admits``: new actions pass the admission stage (caps, storms or a budget are set)."""
    app = create_app(settings, tiers)
    partitions = settings.partitions

    def topic(name: str, record: str | None) -> Any:
        # ``record``: what the topic carries (streams.codecs); agents get raw bytes and decode
        # them in their own error handling, so a bad body is dead-lettered, not a crash
        del record
        return app.topic(
            routing.prefixed(name, settings.topic_prefix),
            key_type=str,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )

    return Topology(
        app=app,
        settings=settings,
        tiers=tiers,
        raw=topic(routing.RAW, None),
        enrich=topic(routing.ENRICH, "classified_alert"),
        classified=topic(routing.CLASSIFIED, "classified_alert_batch"),
        chain_events=topic(routing.CHAIN_EVENTS, "chain_event_batch"),
        outcomes=topic(routing.OUTCOMES, "outcome_batch"),
        dead_letter=topic(routing.DEAD_LETTER, "dead_letter"),
        actions={a.value: topic(routing.action_topic(a.value), "action_request") for a in Action},
        delays={t: topic(backoff.tier_topic(t), "action_request") for t in tiers},
        dedup=app.Table("dedup", default=None, partitions=partitions, key_type=str),
        chains=app.Table("chains", default=None, partitions=partitions, key_type=str),
        notify=topic(routing.NOTIFICATIONS, "action_request"),
        notices=app.Table("notices", default=None, partitions=partitions, key_type=str),
        admission=topic(routing.ADMISSION, "action_request_batch") if admits else None,
        admissions=(
            app.Table("admission", default=None, partitions=partitions, key_type=str)
            if admits
            else None
        ),
    )


def changelog_topics(settings: Settings) -> tuple[str, ...]:
    group = routing.group_id(settings.app_id, settings.topic_prefix)
    return (
        f"{group}-dedup-changelog",
        f"{group}-chains-changelog",
        f"{group}-notices-changelog",
        f"{group}-admission-changelog",
    )
