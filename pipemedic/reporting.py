"""Read the remediation report back from ClickHouse (chDB or a server)."""

from __future__ import annotations

from typing import Any

from streams.adapters.clickhouse import (
    ClickHouseConfig,
    chain_summaries,
    kpis,
    open_store,
    report_by_error_type,
)
from streams.settings import Settings

BY_TYPE_COLUMNS = (
    "error_type",
    "alerts",
    "duplicates",
    "actions_executed",
    "succeeded",
    "failed",
    "manual",
)


def clickhouse_config(settings: Settings) -> ClickHouseConfig:
    return ClickHouseConfig(
        url=settings.clickhouse_url,
        path=str(settings.chdb_dir),
        user=settings.clickhouse_user,
        password=settings.clickhouse_password,
        database=settings.clickhouse_database,
        outcomes_ttl_days=settings.outcomes_ttl_days,
    )


def read_report(
    settings: Settings,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(per error type, KPIs, per chain). Opens the store itself: chDB allows one owner."""
    store = open_store(clickhouse_config(settings))
    try:
        store.ensure_schema()
        by_type = [
            {k: row[k] for k in BY_TYPE_COLUMNS if k in row} for row in report_by_error_type(store)
        ]
        figures = kpis(store)
        # what people did not have to fix by hand (PIPEMEDIC_MANUAL_FIX_MINUTES each)
        saved = (figures.get("succeeded") or 0) * settings.manual_fix_minutes / 60
        figures["engineering_hours_saved"] = round(saved, 2)
        return by_type, figures, chain_summaries(store)
    finally:
        store.close()
