"""pipemedic's one configuration object.

Built once (``Settings()`` reads ``PIPEMEDIC_*`` environment variables), frozen, and handed
down; adapters get only the small config they need. Secrets are ``SecretStr`` and never
appear in :meth:`Settings.public_dump`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.policy.steps import StepConfig


def default_data_dir() -> Path:
    """Runtime data (broker logs, chDB, Faust state) lives outside the source tree."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pipemedic"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIPEMEDIC_", frozen=True, extra="ignore")

    app_id: str = "pipemedic"
    # prefixed to every topic and to the app id (consumer group, changelogs): a shadow
    # pipeline beside production on one cluster (streams/policy/routing.py)
    topic_prefix: str = ""
    # "compact": 9 topics with changelogs, for an Event Hubs Standard namespace (10 event
    # hubs); "default": a topic per stage, action and delay tier (streams/policy/routing.py)
    topic_profile: Literal["default", "compact"] = "default"
    data_dir: Path = Field(default_factory=default_data_dir)

    # Kafka / Event Hubs
    broker_url: str = "kafka://127.0.0.1:9092"
    broker_sasl_username: str = ""  # Event Hubs: the literal "$ConnectionString"
    broker_sasl_password: SecretStr = SecretStr("")  # Event Hubs: the connection string
    # OAUTHBEARER: Entra ID tokens for the namespace from azure-identity instead of a
    # connection string (streams/broker.py); "default" is DefaultAzureCredential, and
    # broker_entra_client_id names a user-assigned managed identity
    broker_sasl_mechanism: Literal["PLAIN", "OAUTHBEARER"] = "PLAIN"
    broker_entra_credential: Literal["default", "managed_identity"] = "default"
    broker_entra_client_id: str = ""
    broker_session_timeout_s: float = 30.0
    # how often acknowledged offsets are committed (Faust's broker_commit_interval)
    broker_commit_interval_s: float = 2.8
    # Tansu answers ListOffsets with the last batch's base offset + 1: read end offsets from
    # a fetch instead, so table recovery restores all state (pipemedic/tansu.py)
    broker_end_offsets_from_fetch: bool = False
    # Tansu holds an empty fetch for the whole wait; Faust's is 1500 ms. 0 = leave Faust's
    broker_fetch_max_wait_ms: int = 0
    partitions: int = 4
    # topics (pipemedic topics plan/create): copies of each partition, and how long records
    # stay on topics that delete (compacted ones keep the latest record per key for ever)
    replication_factor: int = Field(default=3, ge=1)
    topic_retention_hours: int = Field(default=7 * 24, ge=1)
    dead_letter_retention_hours: int = Field(default=30 * 24, ge=1)
    # ingest takes up to this many raw messages at once (or what arrived within the linger)
    # and sends one batch per partition downstream: the framework's cost per message, and each
    # later stage's wait for the broker's acknowledgement, is paid once per batch instead of
    # once per alert; 0.1 s is nothing beside an alert's own delay (bench/README.md, ingest)
    ingest_batch_size: int = 500
    ingest_linger_s: float = 0.1
    # how often each worker writes what its ingest stage saw (``ingested`` rows, per shape)
    ingest_tally_s: float = Field(default=60.0, gt=0)
    # the producer waits this long to fill a batch: far fewer, fuller produce requests (and
    # socket writes) under load, for at most this much latency; Faust's default is 0
    producer_linger_s: float = 0.005
    producer_max_batch_bytes: int = 256 * 1024
    # uvloop runs the worker's event loop in C: socket I/O, timers and task switches, which
    # are most of an executor's CPU, cost less (more actions/s: bench/README.md). "asyncio" is
    # the fallback, and what a worker uses where uvloop is not installed (Windows)
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # the worker's logs: "json" is one object a line (time, level, logger, message, exc_info)
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(str.upper)
    ] = "INFO"
    log_format: Literal["text", "json"] = "text"

    # ClickHouse: empty url = embedded chDB in <data_dir>/chdb
    clickhouse_url: str = ""
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    clickhouse_database: str = "pipemedic"
    # outcome rows and chain summaries are dropped this many days after their time; 0 = kept
    outcomes_ttl_days: int = Field(default=0, ge=0)
    sink_batch_size: int = 500
    sink_flush_s: float = 1.0

    # safety
    mode: Literal["observe", "approval", "automatic"] = "observe"
    max_retries_cap: int = 5
    dedup_horizon_s: int = 7 * 24 * 3600
    # records a replay marked (header pipemedic-replay) are only observed, never acted on
    replayed_observe_only: bool = True

    # configuration files
    rules_file: Path | None = None  # overrides/additions to the rule table and schedules
    estate_file: Path | None = None  # factories, workspaces, credentials, playbooks

    # executors
    verify_poll_s: float = 30.0
    verify_max_polls: int = 40
    step_retry_limit: int = 5  # transient platform errors on one step before a human looks
    transient_backoff_s: tuple[float, ...] = (5.0, 15.0, 30.0, 60.0, 120.0)
    upstream_recheck_s: float = 60.0
    upstream_max_checks: int = 30
    executor_concurrency: int = 256  # actions in flight per worker
    # steps that finish within this share their messages (one batch per partition of the
    # chain events, the links, the outcomes and each delay tier): under load far fewer
    # messages for the stages downstream to take one by one, for at most this much latency
    executor_linger_s: float = 0.05
    # estimated compute cost (USD) of one executed action, for the cost KPI and dashboard;
    # e.g. PIPEMEDIC_ACTION_COST_USD='{"retry_pipeline": 0.4}'
    action_cost_usd: dict[str, float] = Field(
        default_factory=lambda: {
            "retry_pipeline": 0.25,
            "upstream_check": 0.25,
            "repair_job": 1.50,
            "restart_cluster": 2.00,
            "scale_cluster": 3.00,
            "library_fallback": 2.00,
            "create_table": 0.50,
            "manual": 0.0,
        }
    )
    # no action may take today's (UTC) estimated spend past this; 0 = no cap. Reserved when an
    # action is admitted, on the one admission partition (streams/policy/admission.py), so it
    # holds exactly across workers
    daily_cost_cap_usd: float = 0.0
    # admission (caps and storms come from the rules file): a held action is looked at again
    # this much later; a storm's probe that has not failed again after storm_probe_s ends the
    # storm; held actions then go through at no more than storm_release_per_s
    admission_recheck_s: float = 30.0
    storm_probe_s: float = 120.0
    storm_release_per_s: float = 2.0
    http_timeout_s: float = 20.0
    # PEM bundle trusted for TLS by the ADF/playbook HTTP client and the Azure credentials
    # instead of the system CAs (a TLS-inspecting proxy's CA; the simulator's in tests)
    ca_bundle: Path | None = None
    # per platform target: consecutive transient/throttled failures that open its breaker,
    # and how long it stays open before one call may test the target again
    breaker_threshold: int = 5
    # an action held by `pipemedic pause` is looked at again this often (a delay tier)
    pause_recheck_s: float = 5.0
    breaker_cooldown_s: float = 60.0
    # our own Databricks rate limits, calls per second per workspace (bursts of one second's
    # worth); the defaults are what Databricks documents for jobs/runs/get and jobs/run-now
    databricks_reads_per_s: float = Field(default=100.0, gt=0)
    databricks_writes_per_s: float = Field(default=20.0, gt=0)

    # worker web server (health, HTTP webhooks)
    web_host: str = "127.0.0.1"  # docker-compose sets 0.0.0.0 so Azure action groups can reach it
    web_port: int = 6066
    webhook_api_key: SecretStr = SecretStr("")
    # signs the approval links in notifications (GET/POST /approvals/<chain>); empty = no links
    approval_secret: SecretStr = SecretStr("")
    # minutes a person spends on a failure pipemedic fixes: "engineering hours saved"
    manual_fix_minutes: float = 30.0

    def public_dump(self) -> dict[str, Any]:
        """Every setting, secrets masked: safe to log or print."""
        data = self.model_dump(mode="json")
        for name, field in type(self).model_fields.items():
            if field.annotation is SecretStr:
                data[name] = "**********" if getattr(self, name).get_secret_value() else ""
        return data

    def step_config(self) -> StepConfig:
        return StepConfig(
            verify_poll_s=self.verify_poll_s,
            verify_max_polls=self.verify_max_polls,
            step_retry_limit=self.step_retry_limit,
            transient_backoff_s=self.transient_backoff_s,
            upstream_recheck_s=self.upstream_recheck_s,
            upstream_max_checks=self.upstream_max_checks,
            action_cost_usd=dict(self.action_cost_usd),
        )

    def internal_delays_s(self) -> tuple[float, ...]:
        """Waits the executors schedule themselves; each needs a delay tier too."""
        return (
            self.verify_poll_s,
            self.upstream_recheck_s,
            self.pause_recheck_s,
            *self.transient_backoff_s,
        )

    @property
    def faust_dir(self) -> Path:
        return self.data_dir / "faust"

    @property
    def chdb_dir(self) -> Path:
        return self.data_dir / "chdb"
