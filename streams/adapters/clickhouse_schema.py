"""Bring a store's schema up to date: create what is missing, keep what older versions made.

Run by every writer before its first insert (and again after a table went missing), so
every step is idempotent and safe with two workers doing it at once:

* ``outcomes`` is created partitioned by month; a table an older version created without
  partitions keeps working as it is. A partition key cannot be altered, so moving such a
  table is a copy: ``migrate_outcomes`` (the embedded store does it on open, as its only
  owner; on a server an operator runs the same statements with the workers stopped:
  README, "ClickHouse at scale").
* the TTL (``outcomes_ttl_days``, 0 = none) is applied to ``outcomes`` and ``chain_state``
  only when it differs from theirs: changing it rewrites the TTL information of every part.
* ``chain_state`` and its materialized view are created if missing, then folded from the
  rows already in ``outcomes`` once (a table comment records that it was); rows inserted
  while it runs are folded twice, which the states ignore.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from streams.adapters import clickhouse_chains as chains
from streams.adapters import clickhouse_sql as sql

Run = Callable[[str], Any]
Query = Callable[[str, Mapping[str, Any]], list[dict[str, Any]]]

_FOLDED = "folded from outcomes"
_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")


def _ttl_days(engine_full: str) -> int:
    found = _TTL_DAYS.search(engine_full)
    return int(found.group(1)) if found else 0


def _tables(query: Query, database: str) -> dict[str, dict[str, Any]]:
    rows = query(
        "SELECT name, engine_full, partition_key, comment FROM system.tables"
        " WHERE database = {db:String}",
        {"db": database},
    )
    return {r["name"]: r for r in rows}


def migrate_outcomes(database: str) -> tuple[str, ...]:
    """Statements that move an unpartitioned ``outcomes`` into the current layout. Nothing
    may write meanwhile; a run stopped halfway is started again from the first statement."""
    db = sql.quote_identifier(database)
    columns = ", ".join(sql.COLUMN_NAMES)
    new = sql.create_outcomes(database).replace(
        f"{db}.outcomes\n", f"{db}.outcomes_partitioned\n", 1
    )
    return (
        # the view follows the table it was made on, whatever its name: made again afterwards
        f"DROP VIEW IF EXISTS {db}.chain_state_mv",
        f"DROP TABLE IF EXISTS {db}.outcomes_partitioned",
        new,
        f"INSERT INTO {db}.outcomes_partitioned ({columns}) SELECT {columns} FROM {db}.outcomes"
        " SETTINGS insert_deduplicate = 0",
        f"RENAME TABLE {db}.outcomes TO {db}.outcomes_unpartitioned,"
        f" {db}.outcomes_partitioned TO {db}.outcomes",
        f"DROP TABLE {db}.outcomes_unpartitioned",
    )


def apply(run: Run, query: Query, database: str, ttl_days: int = 0, *, migrate: bool = False):
    """``migrate``: copy an unpartitioned ``outcomes`` into the current layout (only for a
    store nobody else writes to: the embedded one)."""
    before = _tables(query, database)
    run(sql.create_outcomes(database, ttl_days))
    run(sql.add_missing_columns(database))
    outcomes = before.get("outcomes")
    if outcomes is not None and migrate and not outcomes["partition_key"]:
        for statement in migrate_outcomes(database):
            run(statement)
        outcomes = _tables(query, database)["outcomes"]
    if outcomes is not None:
        _set_ttl(run, database, "outcomes", outcomes["engine_full"], ttl_days)
    run(chains.create_chain_state(database, ttl_days))
    state = before.get("chain_state")
    if state is not None:
        _set_ttl(run, database, "chain_state", state["engine_full"], ttl_days)
    run(chains.create_chain_state_view(database))
    if state is None or _FOLDED not in state["comment"]:
        run(chains.backfill_chain_state(database))
        run(
            f"ALTER TABLE {sql.quote_identifier(database)}.chain_state MODIFY COMMENT "
            f"'one row per chain after merges, {_FOLDED}; see streams/adapters/clickhouse_chains.py'"
        )
    run(chains.create_chains_view(database))
    run(chains.create_chains_from_rows_view(database))


def _set_ttl(run: Run, database: str, table: str, engine_full: str, ttl_days: int) -> None:
    if _ttl_days(engine_full) == ttl_days:
        return
    name = f"{sql.quote_identifier(database)}.{table}"
    if ttl_days <= 0:
        run(f"ALTER TABLE {name} REMOVE TTL")
    elif table == "outcomes":
        run(f"ALTER TABLE {name} MODIFY {sql.outcomes_ttl(ttl_days)}")
    else:
        run(f"ALTER TABLE {name} MODIFY {chains.chain_state_ttl(ttl_days)}")
