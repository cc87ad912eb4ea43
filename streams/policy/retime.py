"""Move the times an alert payload names, so a replayed alert happens now.

A capture of ``alerts-raw`` holds alerts as they fired. Replayed as they are, they are old:
enrichment asks the platform about a window that ended long ago, and the dedup horizon sees
failures from another week. ``pipemedic replay --shift-times-to-now`` moves every time inside
the payload by one shift (so gaps between alerts stay as they were) with :func:`shift_times`.

Which values are times is a table of field names, matched the way the normalisers match them
(case, ``_``, ``-`` and spaces ignored), in every shape we ingest:

* Azure Monitor common schema: ``firedDateTime``, ``resolvedDateTime``, ``windowStartTime``,
  ``windowEndTime``, legacy ``SearchIntervalStartTimeUtc``/``SearchIntervalEndtimeUtc``, the
  ``TimeGenerated``-like columns of search results and name/value dimensions;
* ADF diagnostic logs and queryPipelineRuns: ``time``, ``start``, ``end``, ``runStart``,
  ``runEnd``, ``lastUpdated``, ``ExecutionStart``;
* Databricks: ``timestamp`` (cluster events, relay webhooks), ``terminated_time``,
  ``start_time``, ``end_time``.

A value keeps its format: ISO-8601 with its own fraction digits and zone, the legacy
``5/7/2024 1:51:31 PM`` form, epoch milliseconds or seconds, numbers as numbers and digit
strings as digit strings. Anything that does not parse as a time is left alone, and a payload
that is not JSON comes back unchanged. No clock: the caller says what "now" is
(:func:`shift_to_now`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

# folded field names (lower case, no " ", "_", "-") whose values are times
TIME_FIELDS: frozenset[str] = frozenset(
    {
        # Azure Monitor
        "fireddatetime",
        "resolveddatetime",
        "windowstarttime",
        "windowendtime",
        "searchintervalstarttimeutc",
        "searchintervalendtimeutc",
        "timegenerated",
        # ADF diagnostic logs, queryPipelineRuns
        "time",
        "start",
        "end",
        "runstart",
        "runend",
        "lastupdated",
        "executionstart",
        # Databricks
        "timestamp",
        "terminatedtime",
        "starttime",
        "endtime",
    }
)
_FOLD = str.maketrans("", "", " _-")
_ISO = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?")
_LEGACY = "%m/%d/%Y %I:%M:%S %p"
_DIGITS = re.compile(r"\d{10,13}")
_MS_EPOCH_FROM = 10**11  # numbers above this are epoch ms, below epoch seconds


def is_time_field(name: Any) -> bool:
    return isinstance(name, str) and name.lower().translate(_FOLD) in TIME_FIELDS


def shift_value(value: Any, shift_ms: int) -> Any:
    """``value`` moved by ``shift_ms`` in its own format; unchanged if it is not a time."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _shift_epoch(value, shift_ms)
    if isinstance(value, float):
        moved = _shift_epoch(int(value), shift_ms)
        return float(moved) + (value - int(value)) if moved != int(value) else value
    if isinstance(value, str):
        if _DIGITS.fullmatch(value):
            return str(_shift_epoch(int(value), shift_ms))
        match = _ISO.fullmatch(value)
        if match:
            return _shift_iso(match, shift_ms)
        try:
            parsed = datetime.strptime(value, _LEGACY)
        except ValueError:
            return value
        return _legacy(parsed + timedelta(milliseconds=shift_ms))
    return value


def _shift_epoch(value: int, shift_ms: int) -> int:
    if value <= 0:
        return value  # "not started" zeros stay zeros
    if value >= _MS_EPOCH_FROM:
        return value + shift_ms
    return value + shift_ms // 1000


def _shift_iso(match: re.Match[str], shift_ms: int) -> str:
    main, fraction, zone = match.group(1), match.group(2) or "", match.group(3) or ""
    separator = "T" if "T" in main else " "
    base = datetime.strptime(main.replace("T", " "), "%Y-%m-%d %H:%M:%S")
    # the fraction in nanoseconds, so 7-digit .NET ticks survive exactly
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    total_ns = nanos + shift_ms * 1_000_000
    seconds, nanos = divmod(total_ns, 1_000_000_000)
    moved = base + timedelta(seconds=seconds)
    text = moved.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    if fraction:
        text += "." + f"{nanos:09d}"[: len(fraction)]
    return text + zone


def _legacy(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment:%M:%S} {half}"


def shift_document(doc: Any, shift_ms: int) -> Any:
    """A copy of a parsed JSON document with every time field moved by ``shift_ms``."""
    if isinstance(doc, list):
        return [shift_document(item, shift_ms) for item in doc]
    if not isinstance(doc, dict):
        return doc
    moved: dict[str, Any] = {}
    for key, value in doc.items():
        if is_time_field(key) and not isinstance(value, dict | list):
            moved[key] = shift_value(value, shift_ms)
        else:
            moved[key] = shift_document(value, shift_ms)
    # a name/value pair (Log Alerts V2 dimensions, property bags): the name says what it is
    if is_time_field(doc.get("name")) and "value" in doc and not isinstance(doc["value"], dict):
        moved["value"] = shift_value(doc["value"], shift_ms)
    # a search-results table: the columns say which cells of each row are times
    columns = doc.get("columns")
    if isinstance(columns, list) and isinstance(doc.get("rows"), list):
        timed = [
            i for i, c in enumerate(columns) if isinstance(c, dict) and is_time_field(c.get("name"))
        ]
        moved["rows"] = [_shift_row(row, timed, shift_ms) for row in doc["rows"]]
    return moved


def _shift_row(row: Any, timed: list[int], shift_ms: int) -> Any:
    if not isinstance(row, list):
        return row
    return [shift_value(v, shift_ms) if i in timed else v for i, v in enumerate(row)]


def shift_times(payload: bytes, shift_ms: int) -> bytes:
    """``payload`` with every time it names moved by ``shift_ms``; bytes that are not a JSON
    object or array (or hold no time) come back as they were."""
    if not shift_ms or payload.lstrip()[:1] not in (b"{", b"["):
        return payload
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return payload
    moved = shift_document(doc, shift_ms)
    if moved == doc:
        return payload
    return json.dumps(moved, separators=(",", ":"), ensure_ascii=False).encode()


def shift_to_now(timestamps_ms: Iterable[int], now_ms: int) -> int:
    """The shift (whole seconds, in ms) that moves the latest of ``timestamps_ms`` to ``now_ms``:
    a replayed capture then ends now, and every gap inside it stays as it was."""
    latest = max((t for t in timestamps_ms if t > 0), default=now_ms)
    return (now_ms - latest) // 1000 * 1000
