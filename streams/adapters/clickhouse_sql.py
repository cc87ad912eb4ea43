"""The SQL text of the audit trail: schema, the ``chains`` view and the report queries.

One dialect for both stores (embedded chDB and a ClickHouse server), so everything here is
plain ClickHouse SQL with ``{name:Type}`` server-side parameters; nothing is formatted into
a query except the database identifier of the DDL, which is validated first.

Replays must not count twice. The table is a ReplacingMergeTree keyed on
``(chain_id, event_id)``, partitioned by month of ``at``, and every read of rows goes through
``FINAL``, so two copies of one transition in one month collapse at query time even before a
background merge has removed one.

What a chain *ended as* is decided once, in the ``chains`` view (kept from
``chain_state``, an AggregatingMergeTree a materialized view fills on insert:
``clickhouse_chains.py``), and every report and dashboard reads that view rather than
re-deriving it:

=============  =============================================================================
result         meaning
=============  =============================================================================
remediated     last state ``resolved`` and pipemedic executed at least one action: a success
self_healed    last state ``resolved`` with no action of ours (the platform's own retry)
gave_up        a ``gave_up`` row exists: automation exhausted its attempts (even if people
               fixed it later: that is still a failure of the automation; such a chain's
               last state is ``resolved`` and ``resolved_by`` is ``people``)
manual         a ``manual`` row exists: handed to a human with no automated attempt
               (never-automate list, observe mode)
dead_letter    the chain's last row is a dead letter (most dead letters have no chain;
               they are counted from the rows, see KPIS)
open           anything else: still scheduled, verifying, waiting
=============  =============================================================================

Once a chain is final (resolved, gave up, manual), rows that arrive after its last final row
(a duplicate or late alert, a redelivered step's report, a replay) change neither its final
state, nor its result, attempts, ``ended_at`` or time to resolution: the per-chain view agrees
with the KPIs whatever arrives later. Only a new failure after it was resolved, which starts
the chain again, reopens it.

Success rate = remediated / (remediated + gave_up): the share of chains where automation
tried and finished that it fixed (the KPI target is > 80 %).
"""

from __future__ import annotations

import re

# Tables are data: one row per Outcome field, in the dataclass order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "String"),
    ("at", "DateTime64(3, 'UTC')"),
    ("chain_id", "String"),
    ("dedup_key", "String"),
    ("state", "LowCardinality(String)"),
    ("source", "LowCardinality(String)"),
    ("scope", "String"),
    ("pipeline", "String"),
    ("run_id", "String"),
    ("alert_id", "String"),
    ("error_type", "LowCardinality(String)"),
    ("risk", "LowCardinality(String)"),
    ("action", "LowCardinality(String)"),
    ("attempt", "UInt32"),
    ("max_attempts", "UInt32"),
    ("due_at", "DateTime64(3, 'UTC')"),
    ("first_seen_at", "DateTime64(3, 'UTC')"),
    ("new_run_id", "String"),
    ("platform_status", "LowCardinality(String)"),
    ("cost_usd", "Float64"),
    ("detail", "String"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
# Outcome carries these as epoch milliseconds; the table stores DateTime64(3).
TIME_COLUMNS: frozenset[str] = frozenset({"at", "due_at", "first_seen_at"})

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain ClickHouse identifier: {name!r}")
    return f"`{name}`"


def create_database(database: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}"


# Months: a dashboard's time range reads only its partitions, and a TTL drops whole parts.
PARTITION_KEY = "toYYYYMM(at)"


def outcomes_ttl(ttl_days: int) -> str:
    """The TTL clause of ``outcomes`` ("" for none): rows go ``ttl_days`` after ``at``."""
    return f"TTL toDateTime(at) + INTERVAL {int(ttl_days)} DAY" if ttl_days > 0 else ""


def create_outcomes(database: str, ttl_days: int = 0) -> str:
    columns = ",\n    ".join(f"{name} {type_}" for name, type_ in COLUMNS)
    # Replacing works inside one partition only: a copy of a row replayed in a later month
    # than the first (a replay carries a new ``at``) stays a second row under FINAL. The
    # chain summaries ignore such copies (clickhouse_chains.py); row counts see both.
    # non_replicated_deduplication_window turns on insert deduplication for a plain
    # (non-replicated) server and for chDB; replicated and ClickHouse Cloud tables
    # deduplicate inserts by default. ttl_only_drop_parts: expired rows go with their
    # month's parts, not by rewriting them.
    ttl = f"{outcomes_ttl(ttl_days)}\n" if ttl_days > 0 else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(database)}.outcomes\n(\n    {columns}\n)\n"
        "ENGINE = ReplacingMergeTree\n"
        f"PARTITION BY {PARTITION_KEY}\n"
        "ORDER BY (chain_id, event_id)\n"
        f"{ttl}"
        "SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1"
    )


def add_missing_columns(database: str) -> str:
    """Outcome grew a field since the table was created: add it (a no-op when up to date)."""
    clauses = ",\n    ".join(f"ADD COLUMN IF NOT EXISTS {n} {t}" for n, t in COLUMNS)
    return f"ALTER TABLE {quote_identifier(database)}.outcomes\n    {clauses}"


# --- reports ---------------------------------------------------------------------------
# Each takes {since_ms:Int64} (0 = everything) and reads the default database of the store.
# Row-level counts (alerts, duplicates, executions, cost) use rows at or after ``since``;
# chain-level counts use chains with any activity at or after ``since``.
# Alert fatigue reduction: without pipemedic every alert pages someone; with it, one page
# per chain that needed a human (gave up, manual, dead letter).

_SINCE = "fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')"

REPORT_BY_ERROR_TYPE = f"""
SELECT
    if(kind = '', '(unclassified)', kind) AS error_type,
    uniqExactIf(alert_id, state IN ('received', 'duplicate', 'ignored') AND alert_id != '') AS alerts,
    countIf(state = 'duplicate') AS duplicates,
    countIf(state = 'executed') AS actions_executed,
    uniqExactIf(chain_id, result = 'remediated') AS succeeded,
    uniqExactIf(chain_id, result = 'gave_up') AS failed,
    uniqExactIf(chain_id, result = 'manual') AS manual,
    uniqExactIf(chain_id, result = 'self_healed') AS self_healed,
    uniqExactIf(chain_id, result IN ('open', 'dead_letter')) AS open,
    succeeded / nullIf(succeeded + failed, 0) AS success_rate,
    sum(cost_usd) AS cost_usd
FROM
(
    SELECT o.alert_id AS alert_id, o.state AS state, o.chain_id AS chain_id,
           o.cost_usd AS cost_usd, c.result AS result,
           if(c.error_type != '', c.error_type, o.error_type) AS kind
    FROM outcomes AS o FINAL
    LEFT JOIN chains AS c ON c.chain_id = o.chain_id
    WHERE o.at >= {_SINCE}
)
GROUP BY error_type
ORDER BY error_type
"""

CHAIN_SUMMARIES = f"""
SELECT
    chain_id, final_state, result, resolved_by, source, pipeline, error_type, risk, action,
    actions_taken, executed_actions, attempts, duplicates, cost_usd,
    toUnixTimestamp64Milli(opened_at) AS opened_at,
    toUnixTimestamp64Milli(last_at) AS last_at,
    toUnixTimestamp64Milli(resolved_at) AS resolved_at,
    time_to_resolution_ms
FROM (SELECT * FROM chains WHERE last_at >= {_SINCE})  -- before the aliases shadow last_at
ORDER BY opened_at, chain_id
"""

KPIS = f"""
SELECT *, 1 - needed_human / nullIf(alerts, 0) AS alert_fatigue_reduction
FROM
(
    SELECT
        count() AS chains,
        countIf(result = 'remediated') AS succeeded,
        countIf(result = 'gave_up') AS failed,
        countIf(result = 'manual') AS manual,
        countIf(result = 'self_healed') AS self_healed,
        countIf(result IN ('gave_up', 'manual', 'dead_letter')) AS needed_human,
        succeeded / nullIf(succeeded + failed, 0) AS success_rate,
        avgIf(time_to_resolution_ms, resolved_by = 'pipemedic') AS mean_time_to_resolution_ms,
        avgIf(time_to_resolution_ms, resolved_by = 'people') AS mean_time_to_resolution_manual_ms,
        avgIf(attempts, result = 'remediated') AS mean_retries
    FROM chains
    WHERE last_at >= {_SINCE}
) AS c
CROSS JOIN
(
    SELECT
        uniqExactIf(alert_id, state IN ('received', 'duplicate', 'ignored') AND alert_id != '') AS alerts,
        countIf(state = 'duplicate') AS alerts_suppressed,
        countIf(state = 'executed') AS actions_executed,
        countIf(state = 'dead_letter') AS dead_letters,
        countIf(state = 'ignored') AS ignored_outside_estate,
        sum(cost_usd) AS cost_usd
    FROM outcomes FINAL
    WHERE at >= {_SINCE}
) AS r
"""
