"""Avro encoding of the internal records, with fastavro.

The schemas live in ``schemas/*.avsc`` (the contract other consumers read); they reference
each other by name (``pipemedic.Alert``), so they are parsed in dependency order into one
shared set of named types. Messages are schemaless Avro bodies: every topic carries exactly
one record type. Faust hands agents the raw bytes and the agents decode them here, inside
their own error handling: a body that does not decode is :class:`Undecodable` and goes to the
dead-letter topic with the reason, instead of crashing the agent in Faust's codec layer. The busy internal topics
(classified alerts, chain events, outcomes, the delay tiers' action requests and the
notifier's notices) carry *batches* (``<record>_batch``: a record with one ``items`` array),
so a consumer pays the framework's per-message cost once per batch. Action topics carry
single requests.
"""

from __future__ import annotations

import io
import json
from functools import cache
from importlib import resources
from typing import Any

import fastavro

SCHEMA_DIR = resources.files("schemas")

# Referenced types first: fastavro resolves names against what was parsed before.
_ORDER = (
    "alert",
    "classification",
    "classified_alert",
    "chain_event",
    "action_request",
    "outcome",
    "dead_letter",
    "pause",
    "classified_alert_batch",
    "chain_event_batch",
    "outcome_batch",
    "action_request_batch",
)


@cache
def parsed_schemas() -> dict[str, Any]:
    named: dict[str, Any] = {}
    parsed = {}
    for name in _ORDER:
        raw = json.loads(SCHEMA_DIR.joinpath(f"{name}.avsc").read_text())
        parsed[name] = fastavro.parse_schema(raw, named_schemas=named)
    return parsed


def encode(record: str, obj: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed_schemas()[record], obj)
    return buffer.getvalue()


class Undecodable(ValueError):
    """A message body is not a valid ``record`` (truncated, garbage, another schema)."""

    reason = "undecodable"


def decode(record: str, data: bytes) -> dict[str, Any]:
    """One ``record`` from a message body; :class:`Undecodable` if it is not one."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Undecodable(f"{record}: expected bytes, got {type(data).__name__}")
    buffer = io.BytesIO(data)
    try:
        value = fastavro.schemaless_reader(buffer, parsed_schemas()[record], None)
    except Exception as exc:  # fastavro raises whatever the bytes lead it to
        raise Undecodable(f"{record}: {type(exc).__name__}: {exc}") from exc
    if buffer.tell() != len(data):  # Avro is not self-describing: garbage can parse as a prefix
        raise Undecodable(f"{record}: {len(data) - buffer.tell()} bytes left over")
    return value


# records whose topics carry ``<record>_batch`` messages
BATCHED = frozenset({"classified_alert", "chain_event", "outcome"})


def items_of(record: str, data: bytes) -> list[dict[str, Any]]:
    """The records in one message of a topic carrying ``record``: a batch's items, or one."""
    return decode_items(record, data) if record in BATCHED else [decode(record, data)]


# records with a nullable ``classification``: fastavro picks a union branch by validating the
# value against each candidate (a whole record); naming the branch skips that, a sizeable
# share of the encoding cost of a classified alert (bench/README.md)
_NAMED_UNIONS = {"classified_alert": "classification", "chain_event": "classification"}


def encode_items(record: str, items: list[dict[str, Any]]) -> bytes:
    """A ``<record>_batch`` message body holding ``items``."""
    union = _NAMED_UNIONS.get(record)
    if union is not None:
        items = [_named_branch(item, union) for item in items]
    return encode(f"{record}_batch", {"items": items})


def _named_branch(item: dict[str, Any], name: str) -> dict[str, Any]:
    value = item.get(name)
    if value is None or isinstance(value, tuple):
        return item
    return {**item, name: ("pipemedic.Classification", value)}


def decode_items(record: str, data: bytes) -> list[dict[str, Any]]:
    """The items of a ``<record>_batch`` message body."""
    return decode(f"{record}_batch", data)["items"]
