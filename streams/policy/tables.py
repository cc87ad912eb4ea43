"""Missing tables: which table an error names, and whether the estate may create it.

Alert text never becomes DDL. An error message only *names* the table that was not found;
that name is a lookup key into the estate's ``tables`` map (``catalog.schema.table`` ->
DDL), and the statement that runs is the estate's own, checked when the estate is loaded
(:func:`ddl_problem`): exactly one ``CREATE TABLE IF NOT EXISTS`` of that very table, so
running it twice is harmless and it can never replace or drop anything.

Names are plain identifiers (letters, digits, underscores), compared lower-cased as Unity
Catalog stores them. A name the error gives with fewer than three parts (``sales.orders``)
is recorded and shown to people, but never matches a DDL: the catalog would be a guess.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import replace

from streams.policy.model import Alert

_PART = r"[A-Za-z_][A-Za-z0-9_]{0,254}"
_QUOTED = rf"[`'\"]?{_PART}[`'\"]?"
_NAME = rf"{_QUOTED}(?:\.{_QUOTED}){{0,2}}"
FULL_NAME = re.compile(rf"{_PART}\.{_PART}\.{_PART}")

# How Spark and Databricks name a missing table (first match wins): Spark 3.4+ error
# classes, the older AnalysisException wording, Hive's NoSuchTableException, Delta's.
_NAMED = (
    re.compile(rf"table or view ({_NAME}) cannot be found", re.IGNORECASE),
    re.compile(rf"table or view not found:? ({_NAME})", re.IGNORECASE),
    re.compile(rf"table or view ({_QUOTED}) not found in database ({_QUOTED})", re.IGNORECASE),
    re.compile(rf"table ({_NAME}) (?:does not exist|not found|cannot be found)", re.IGNORECASE),
)
_DDL = re.compile(
    rf"\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(?P<name>{_NAME})(?P<rest>[\s\S]*)",
    re.IGNORECASE,
)


def _plain(name: str) -> str:
    return ".".join(part.strip("`'\"") for part in name.split(".")).lower()


def table_name(message: str) -> str:
    """The table an error says is missing, lower-cased ("" when it names none)."""
    for index, pattern in enumerate(_NAMED):
        found = pattern.search(message)
        if found is None:
            continue
        if index == 2:  # "table or view 'orders' not found in database 'sales'"
            return _plain(f"{found.group(2)}.{found.group(1)}")
        return _plain(found.group(1))
    return ""


def ddl_problem(name: str, ddl: str) -> str:
    """Why ``ddl`` may not be run for table ``name`` ("" when it may)."""
    if not FULL_NAME.fullmatch(name) or name != name.lower():
        return f"{name!r} is not a lower-case catalog.schema.table name"
    found = _DDL.fullmatch(ddl)
    if found is None:
        return "must be one CREATE TABLE IF NOT EXISTS statement"
    if _plain(found.group("name")) != name:
        return f"creates {_plain(found.group('name'))!r}, not {name!r}"
    if ";" in found.group("rest").rstrip().rstrip(";"):
        return "must be a single statement (no ';' inside)"
    return ""


def with_table_facts(alert: Alert, tables_with_ddl: Collection[str]) -> Alert:
    """``alert`` with the missing table it names (``details.table``) and, when the estate
    holds a DDL for exactly that table, ``details.table_ddl = "estate"`` (the rule table
    reads it). Alerts naming no missing table are returned as they are."""
    name = table_name(alert.message)
    if not name:
        return alert
    facts = {"table": name}
    if FULL_NAME.fullmatch(name) and name in tables_with_ddl:
        facts["table_ddl"] = "estate"
    return replace(alert, details={**alert.details, **facts})
