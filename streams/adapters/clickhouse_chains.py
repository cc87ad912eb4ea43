"""What a chain ended as, kept up to date on insert instead of recomputed on every read.

``chains`` (the view every report and dashboard panel reads) used to aggregate all of
``outcomes FINAL`` with window functions on each query. Now a materialized view folds each
inserted block into ``chain_state``, an AggregatingMergeTree with one row per chain after
merges, and ``chains`` merges those states: a dashboard refresh reads one small row per chain.

Every state is indifferent to copies: maxima, minima, ``argMax`` over a key that orders the
rows, and maps keyed by a hash of the event id (``minMap``/``maxMap``), so a replayed batch,
an insert the table deduplicated, or the backfill of rows the view has already seen count
once, whatever reaches the view first. A row's key is ``at`` in ms × 32 + its state's
lifecycle rank (ties in one millisecond go the lifecycle's way, as in the window view).

Most of a chain's summary is such a fold. Two things are not: once a chain is final, the
attempts and the latest source, scope, pipeline, error type, risk and action are those of its
rows up to its last final row, a bound no insert knows in advance. Attempts are kept as the
first key each attempt number was seen at (a map of a few entries), so the highest one seen
by the end is exact whatever came later. For the values, the state keeps the key of the last
row other than an alert (``last_move``): while it is at or before the last final row, as for
nearly every chain (a duplicate alert after the end is an alert row), the folded values are
exact; a chain with such a row after its end (a redelivered step's report, a platform retry
noticed late) is summarised from its own rows in ``outcomes`` instead, by the window query
below, reading those few chains through the table's primary key. Each such chain costs a read
of the granules that hold it: cheap while they are few, the whole table if most chains had one.

Two copies of one transition with different times (a step replayed later) count once here at
their earliest time; ``outcomes FINAL`` keeps the last copy. Rows removed from ``outcomes``
(TTL) leave the states as they were; ``chain_state`` has the same TTL on its last activity.
"""

from __future__ import annotations

from streams.adapters.clickhouse_sql import quote_identifier
from streams.policy.model import FINAL_STATES, OutcomeState
from streams.policy.notices import SIDE_STATES

# Lifecycle order of the states: breaks ties between rows written in the same millisecond,
# so "resolved" written in the same ms as "executed" still counts as the chain's last state.
_STATES = tuple(s.value for s in OutcomeState)
_STATE_RANK = "[" + ", ".join(f"'{s}'" for s in _STATES) + "]"
_RANKS = 32  # a row's key is at_ms * _RANKS + rank
assert len(_STATES) < _RANKS

# a chain's own final states (streams/policy/model.py FINAL_STATES); the rows that start a
# chain again after one; rows about an alert rather than a move of the chain
_FINALS = "(" + ", ".join(f"'{s.value}'" for s in sorted(FINAL_STATES)) + ")"
_REOPENING = "('scheduled', 'awaiting_approval')"
_ALERT_ROWS = "('received', 'duplicate')"
# rows about telling people and their approval links (streams/policy/notices.py) are not
# chain transitions
_DELIVERIES = "(" + ", ".join(f"'{s}'" for s in sorted(SIDE_STATES)) + ")"
_CHAIN_ROWS = f"chain_id != '' AND state NOT IN {_DELIVERIES}"

_NONE = 9223372036854775807  # "no such row" for a minimum
# added to the key of a row other than an alert: the latest such row wins over any alert row,
# and the latest alert row only counts when the chain has no other (keys stay below 2**50)
_OWN_FIRST = 2**60
# values a chain takes from its latest rows: (column in outcomes, name in the summary)
VALUES: tuple[tuple[str, str], ...] = (
    ("source", "source"),
    ("scope", "scope"),
    ("pipeline", "pipeline"),
    ("error_type", "error_type"),
    ("risk", "risk"),
    ("action", "action"),
)

# The summary's columns, their types, in the view's order (both paths cast to them).
SUMMARY: tuple[tuple[str, str], ...] = (
    ("chain_id", "String"),
    ("ended", "UInt8"),
    ("final_state", "String"),
    ("ended_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("result", "String"),
    ("resolved_by", "String"),
    *((name, "String") for _, name in VALUES),
    ("actions_taken", "UInt64"),
    ("executed_actions", "String"),
    ("attempts", "UInt32"),
    ("duplicates", "UInt64"),
    ("cost_usd", "Float64"),
    ("opened_at", "DateTime64(3, 'UTC')"),
    ("last_at", "DateTime64(3, 'UTC')"),
    ("resolved_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("time_to_resolution_ms", "Nullable(Int64)"),
)

# the derivations both paths share, from: ended, final_state, ended_at, own_executed
_RESULT = """multiIf(
        gave_up, 'gave_up',
        manual, 'manual',
        final_state = 'resolved' AND own_executed, 'remediated',
        final_state = 'resolved', 'self_healed',
        final_state = 'dead_letter', 'dead_letter',
        'open') AS result,
    multiIf(final_state != 'resolved', '',
            result = 'remediated', 'pipemedic',
            result = 'self_healed', 'platform',
            'people') AS resolved_by"""
_RESOLVED = """if(final_state = 'resolved', ended_at, NULL) AS resolved_at,
    toUnixTimestamp64Milli(resolved_at) - toUnixTimestamp64Milli(opened_at)
        AS time_to_resolution_ms"""


def _typed(select: str) -> str:
    columns = ",\n    ".join(f"CAST({n} AS {t}) AS {n}" for n, t in SUMMARY)
    return f"SELECT\n    {columns}\nFROM\n(\n{select}\n)"


# --- the state ---------------------------------------------------------------------------


def chain_state_ttl(ttl_days: int) -> str:
    """A chain's state goes ``ttl_days`` after its last row, as that row does."""
    return f"TTL toDateTime(intDiv(last_key, {_RANKS * 1000})) + INTERVAL {int(ttl_days)} DAY"


def create_chain_state(database: str, ttl_days: int = 0) -> str:
    max_, min_ = "SimpleAggregateFunction(max, Int64)", "SimpleAggregateFunction(min, Int64)"
    values = "".join(
        f"    {name}_latest AggregateFunction(argMaxIf, String, Int64, UInt8),\n"
        for _, name in VALUES
    )
    ttl = f"{chain_state_ttl(ttl_days)}\n"
    return f"""CREATE TABLE IF NOT EXISTS {quote_identifier(database)}.chain_state
(
    chain_id String,
    last_final {max_},
    reopened {max_},
    last_move {max_},
    last_key {max_},
    first_at {min_},
    first_seen {min_},
    first_executed {min_},
    gave_up SimpleAggregateFunction(max, UInt8),
    manual SimpleAggregateFunction(max, UInt8),
    attempt_first AggregateFunction(minMap, Array(UInt32), Array(Int64)),
    latest_state AggregateFunction(argMax, String, Int64),
{values}    executed_at AggregateFunction(minMapIf, Array(UInt64), Array(Int64), UInt8),
    executed_action AggregateFunction(minMapIf, Array(UInt64), Array(String), UInt8),
    costs AggregateFunction(maxMapIf, Array(UInt64), Array(Float64), UInt8),
    duplicates AggregateFunction(uniqExactIf, UInt64, UInt8)
)
ENGINE = AggregatingMergeTree
ORDER BY chain_id
{ttl if ttl_days > 0 else ""}COMMENT 'one row per chain after merges; see streams/adapters/clickhouse_chains.py'"""


def fold_outcomes(database: str) -> str:
    """The states of the rows selected from ``outcomes``: the materialized view's query
    (on each inserted block) and the backfill's (on the whole table)."""
    values = "".join(
        f"    argMaxIfState(CAST({column}, 'String'), own_k, {column} != '') AS {name}_latest,\n"
        for column, name in VALUES
    )
    return f"""WITH toInt64(toUnixTimestamp64Milli(at) * {_RANKS} + indexOf({_STATE_RANK}, state)) AS k,
     cityHash64(event_id) AS h,
     CAST(state, 'String') AS s,
     k + if(s NOT IN {_ALERT_ROWS}, {_OWN_FIRST}, 0) AS own_k
SELECT
    chain_id,
    maxIf(k, s IN {_FINALS}) AS last_final,
    maxIf(k, s IN {_REOPENING}) AS reopened,
    maxIf(k, s NOT IN {_ALERT_ROWS}) AS last_move,
    max(k) AS last_key,
    min(toUnixTimestamp64Milli(at)) AS first_at,
    min(if(toUnixTimestamp64Milli(first_seen_at) > 0, toUnixTimestamp64Milli(first_seen_at),
           {_NONE})) AS first_seen,
    min(if(s = 'executed', k, {_NONE})) AS first_executed,
    max(s = 'gave_up') AS gave_up,
    max(s = 'manual') AS manual,
    minMapState([attempt], [k]) AS attempt_first,
    argMaxState(s, own_k) AS latest_state,
{values}    minMapIfState([h], [k], s = 'executed') AS executed_at,
    minMapIfState([h], [CAST(action, 'String')], s = 'executed') AS executed_action,
    maxMapIfState([h], [cost_usd], cost_usd != 0) AS costs,
    uniqExactIfState(h, s = 'duplicate') AS duplicates
FROM {quote_identifier(database)}.outcomes
WHERE {_CHAIN_ROWS}
GROUP BY chain_id"""


def create_chain_state_view(database: str) -> str:
    db = quote_identifier(database)
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.chain_state_mv TO {db}.chain_state AS\n"
        + fold_outcomes(database)
    )


def backfill_chain_state(database: str) -> str:
    """Fold every row already in ``outcomes`` (a store older than ``chain_state``). Harmless
    to repeat, and harmless for rows the view folds meanwhile: the states ignore copies."""
    return f"INSERT INTO {quote_identifier(database)}.chain_state\n" + fold_outcomes(database)


# --- the summary -------------------------------------------------------------------------

# a chain with a row other than an alert after its last final row: it may change its values
_HAS_LATE_ROWS = "max(last_final) > max(reopened) AND max(last_move) > max(last_final)"


def _from_state(db: str) -> str:
    merged = "".join(f"        argMaxIfMerge({name}_latest) AS {name},\n" for _, name in VALUES)
    return f"""SELECT
    chain_id,
    lf > ro AS ended,
    if(ended, {_STATE_RANK}[lf % {_RANKS}], latest) AS final_state,
    if(ended, fromUnixTimestamp64Milli(intDiv(lf, {_RANKS}), 'UTC'), NULL) AS ended_at,
    fe <= lf AS own_executed,
    {_RESULT},
    {", ".join(name for _, name in VALUES)},
    length(ex_at.1) AS actions_taken,
    arrayStringConcat(arrayMap(x -> x.2, arraySort(arrayZip(ex_at.2, ex_act.2))), ',')
        AS executed_actions,
    -- the highest attempt seen by the end (any, while the chain is open)
    arrayMax(arrayFilter((n, first) -> NOT ended OR first <= lf, att.1, att.2)) AS attempts,
    dups AS duplicates,
    arraySum(money.2) AS cost_usd,
    fromUnixTimestamp64Milli(if(fsn < {_NONE}, fsn, fa), 'UTC') AS opened_at,
    fromUnixTimestamp64Milli(intDiv(lk, {_RANKS}), 'UTC') AS last_at,
    {_RESOLVED}
FROM
(
    SELECT
        chain_id,
        max(last_final) AS lf, max(reopened) AS ro, max(last_key) AS lk,
        min(first_at) AS fa, min(first_seen) AS fsn, min(first_executed) AS fe,
        max(gave_up) AS gave_up, max(manual) AS manual, minMapMerge(attempt_first) AS att,
        argMaxMerge(latest_state) AS latest,
{merged}        minMapIfMerge(executed_at) AS ex_at, minMapIfMerge(executed_action) AS ex_act,
        maxMapIfMerge(costs) AS money, uniqExactIfMerge(duplicates) AS dups
    FROM {db}.chain_state
    GROUP BY chain_id
    HAVING NOT ({_HAS_LATE_ROWS})
)"""


def _chain_value(column: str, name: str) -> str:
    """The chain's latest non-empty ``column``, from its own rows before any alert row (a
    duplicate alert may be classified otherwise than the chain it joined)."""
    own = f"{column} != '' AND s NOT IN {_ALERT_ROWS} AND own"
    return (
        f"if(countIf({own}) > 0, argMaxIf({column}, (t, rank), {own}), "
        f"argMaxIf({column}, (t, rank), {column} != '')) AS {name}"
    )


def from_rows(database: str, chains: str = "") -> str:
    """The summary computed from the rows of ``outcomes`` (``chains``: a condition on
    ``chain_id`` to read only some). The reference the folded states must agree with.

    The middle query marks each row ``own`` when it is part of what the chain ended as: once
    a chain is final (a final row, and nothing since that starts it again), rows that arrive
    after its last final row (a duplicate or late alert, a redelivered step's report) change
    neither its state, nor its result, attempts or time to resolution. A new failure after
    it was resolved starts it again (streams/policy/chains.py): a later scheduled row."""
    db = quote_identifier(database)
    values = ",\n    ".join(_chain_value(f"v_{name}", name) for _, name in VALUES)
    renamed = ", ".join(f"{column} AS v_{name}" for column, name in VALUES)
    only = f" AND chain_id IN ({chains})" if chains else ""
    return f"""SELECT
    chain_id,
    max(closed) AS ended,
    multiIf(ended, argMaxIf(s, (t, rank), s IN {_FINALS}),
            countIf(s NOT IN {_ALERT_ROWS}) > 0, argMaxIf(s, (t, rank), s NOT IN {_ALERT_ROWS}),
            argMax(s, (t, rank))) AS final_state,
    if(ended, maxIf(t, s IN {_FINALS}), NULL) AS ended_at,
    countIf(s = 'gave_up' AND own) > 0 AS gave_up,
    countIf(s = 'manual' AND own) > 0 AS manual,
    countIf(s = 'executed' AND own) > 0 AS own_executed,
    {_RESULT},
    {values},
    -- every action taken and its cost, late or not: what the KPIs count
    countIf(s = 'executed') AS actions_taken,
    -- what was done, in order: e.g. scale_cluster,repair_job (a scale, then the run repaired)
    arrayStringConcat(arrayMap(x -> x.2, arraySort(groupArrayIf((t, act), s = 'executed'))), ',')
        AS executed_actions,
    maxIf(att, own) AS attempts,
    countIf(s = 'duplicate') AS duplicates,
    sum(cost) AS cost_usd,
    if(countIf(fs > toDateTime64(0, 3, 'UTC')) > 0,
       minIf(fs, fs > toDateTime64(0, 3, 'UTC')), min(t)) AS opened_at,
    max(t) AS last_at,
    {_RESOLVED}
FROM
(
    SELECT *, finals > 0 AND reopened < last_final AS closed,
           NOT closed OR (t, rank) <= last_final AS own
    FROM
    (
        SELECT *,
               countIf(s IN {_FINALS}) OVER chain AS finals,
               maxIf((t, rank), s IN {_FINALS}) OVER chain AS last_final,
               maxIf((t, rank), s IN {_REOPENING}) OVER chain AS reopened
        FROM
        (
            SELECT chain_id, state AS s, at AS t, {renamed}, action AS act, attempt AS att,
                   cost_usd AS cost, first_seen_at AS fs,
                   indexOf({_STATE_RANK}, state) AS rank
            FROM {db}.outcomes FINAL
            WHERE {_CHAIN_ROWS}{only}
        )
        WINDOW chain AS (PARTITION BY chain_id)
    )
)
GROUP BY chain_id"""


def create_chains_view(database: str) -> str:
    """``chains``: the folded states, and for the few chains with rows after their end, the
    summary from their rows."""
    db = quote_identifier(database)
    late = f"SELECT chain_id FROM {db}.chain_state GROUP BY chain_id HAVING {_HAS_LATE_ROWS}"
    return (
        f"CREATE OR REPLACE VIEW {db}.chains AS\n"
        f"{_typed(_from_state(db))}\nUNION ALL\n{_typed(from_rows(database, late))}"
    )


def create_chains_from_rows_view(database: str) -> str:
    """``chains_from_rows``: every chain from its rows, as ``chains`` was computed before
    ``chain_state``; slow, for checking the states (``chains`` must equal it)."""
    db = quote_identifier(database)
    return f"CREATE OR REPLACE VIEW {db}.chains_from_rows AS\n{_typed(from_rows(database))}"
