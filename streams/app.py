"""The one Faust app and its topology: topics, codecs and tables.

Topic names come from :mod:`streams.policy.routing`; delay tiers are derived from the
configured schedules, so the app is built from settings at start-up rather than at import.

In the compact topic profile several logical topics share a physical one (each record names
its lane in a header: :meth:`Topology.headers_for`, :meth:`Topology.carries`), and the four
tables are views of one table, ``state``, so that one changelog holds them all
(:class:`TableView`: each table's keys under a prefix of its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
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
    profile: str = routing.DEFAULT_PROFILE

    def headers_for(self, name: str) -> list[tuple[str, bytes]] | None:
        """The headers a record of logical topic ``name`` travels with (its lane, when its
        topic is shared)."""
        lane = routing.lane_of(name, self.profile)
        return None if lane is None else [(routing.LANE_HEADER, lane.encode())]

    def carries(self, lane: str | None, event: Any) -> bool:
        """Whether ``event`` belongs to the stage reading logical topic ``lane``. On a shared
        topic a record naming no lane, or one no stage here reads, goes to the topic's first
        lane (which dead-letters what it cannot decode): no record is passed over by every
        stage."""
        if lane is None or routing.lane_of(lane, self.profile) is None:
            return True
        headers = event.message.headers or ()
        pairs = headers.items() if isinstance(headers, dict) else headers
        for key, value in pairs:
            if key == routing.LANE_HEADER:
                named = bytes(value or b"").decode(errors="replace")
                if named in self.lanes_read:
                    return named == lane
                break
        return lane == routing.first_lane(lane, self.profile)

    @cached_property
    def lanes_read(self) -> frozenset[str]:
        """The logical topics some stage of this worker reads."""
        lanes = {routing.ENRICH, routing.CLASSIFIED, routing.CHAIN_EVENTS}
        if self.admission is not None:
            lanes.add(routing.ADMISSION)
        lanes.update(routing.action_topic(action) for action in self.actions)
        return frozenset(lanes)

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


class TableView:
    """One logical table inside the compact profile's shared table: its keys carry
    ``prefix``. Offers what the stages use of a Faust table (get, item access, pop, items,
    values); writes go, as any table write, to the changelog partition of the event being
    handled."""

    def __init__(self, table: Any, prefix: str) -> None:
        self.table = table
        self.prefix = prefix

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(self.prefix + key, default)

    def __getitem__(self, key: str) -> Any:
        return self.table[self.prefix + key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[self.prefix + key] = value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self.prefix + key) in self.table

    def pop(self, key: str, *default: Any) -> Any:
        return self.table.pop(self.prefix + key, *default)

    def items(self) -> Iterator[tuple[str, Any]]:
        size = len(self.prefix)
        return ((k[size:], v) for k, v in self.table.items() if k.startswith(self.prefix))

    def values(self) -> Iterator[Any]:
        return (v for _, v in self.items())


# the compact profile's one table, and each logical table's key prefix in it
STATE_TABLE = "state"
TABLE_NAMES = ("dedup", "chains", "notices", "admission")


def table_prefix(name: str) -> str:
    return f"{name}/"


def build_topology(settings: Settings, tiers: tuple[int, ...], *, admits: bool = False) -> Topology:
    """``admits``: new actions pass the admission stage (caps, storms or a budget are set)."""
    app = create_app(settings, tiers)
    partitions = settings.partitions
    profile = settings.topic_profile
    topics: dict[str, Any] = {}  # physical name -> its one Faust topic

    def topic(name: str, record: str | None) -> Any:
        # ``record``: what the topic carries (streams.codecs); agents get raw bytes and decode
        # them in their own error handling, so a bad body is dead-lettered, not a crash
        del record
        physical = routing.prefixed(routing.physical_topic(name, profile), settings.topic_prefix)
        if physical not in topics:
            topics[physical] = app.topic(
                physical,
                key_type=str,
                key_serializer="raw",
                value_serializer="raw",
                partitions=partitions,
            )
        return topics[physical]

    shared = (
        app.Table(STATE_TABLE, default=None, partitions=partitions, key_type=str)
        if profile == routing.COMPACT_PROFILE
        else None
    )

    def table(name: str) -> Any:
        if shared is not None:
            return TableView(shared, table_prefix(name))
        return app.Table(name, default=None, partitions=partitions, key_type=str)

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
        dedup=table("dedup"),
        chains=table("chains"),
        notify=topic(routing.NOTIFICATIONS, "action_request"),
        notices=table("notices"),
        admission=topic(routing.ADMISSION, "action_request_batch") if admits else None,
        admissions=table("admission") if admits else None,
        profile=profile,
    )


def changelog_topics(settings: Settings) -> tuple[str, ...]:
    group = routing.group_id(settings.app_id, settings.topic_prefix)
    if settings.topic_profile == routing.COMPACT_PROFILE:
        return (f"{group}-{STATE_TABLE}-changelog",)
    return tuple(f"{group}-{name}-changelog" for name in TABLE_NAMES)


def table_changelog(settings: Settings, name: str) -> tuple[str, str]:
    """Where logical table ``name`` is kept: its changelog topic and its keys' prefix there."""
    group = routing.group_id(settings.app_id, settings.topic_prefix)
    if settings.topic_profile == routing.COMPACT_PROFILE:
        return f"{group}-{STATE_TABLE}-changelog", table_prefix(name)
    return f"{group}-{name}-changelog", ""
