"""What every ingest normaliser shares: the error it raises, stable alert ids, tolerant readers.

A reader returns a clean value or raises :class:`NormalizeError` with a short reason, so a
malformed payload can never escape as a ``KeyError``/``TypeError`` into the Faust agent.
Times are forgiving (a bad time falls back to the receive time); identifiers are strict.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from streams.policy.model import Alert

MAX_ALERT_BYTES = 256 * 1024  # Azure's common-alert-schema cap; also used for Databricks payloads
MAX_BATCH_BYTES = (
    1024 * 1024
)  # Event Hubs publication cap: diagnostic-log and cluster-event batches
MAX_MESSAGE_CHARS = 4000  # enough for the ADF connector code and the Spark exception head
MAX_TEXT_CHARS = 1000  # names, codes and other short facts
MAX_ID_CHARS = 256
HEARTBEAT_PREFIX = "1601-01-01"  # ADF's "not ended yet" end time

T = TypeVar("T")


class NormalizeError(ValueError):
    """The payload cannot become an alert. ``reason`` is short and machine-readable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def alert_id(*facts: str) -> str:
    """A stable id from the identifying facts: an identical payload yields the same id."""
    joined = "\x1f".join(facts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(joined, digest_size=16).hexdigest()


def _clean(value: str) -> str:
    # A lone surrogate from a JSON "\ud800" escape would break the Avro encoder downstream.
    if value.isascii():  # O(1) in CPython: the common case costs nothing
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def text(value: Any, field: str, limit: int = MAX_TEXT_CHARS) -> str:
    """A short string fact; ints are accepted (ADF error codes arrive as 2200 or "2200")."""
    if value is None:
        return ""
    if isinstance(value, str):
        if value == "null":  # ADF writes the string "null" into empty Error fields
            return ""
        return _clean(value[:limit])
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise NormalizeError(f"wrong_type:{field}")


def message(value: Any, field: str = "message") -> str:
    return text(value, field, MAX_MESSAGE_CHARS)


def ident(value: Any, field: str) -> str:
    """An identifier: a non-empty string or an integer (Databricks sends both)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise NormalizeError(f"wrong_type:{field}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        if len(value) > MAX_ID_CHARS:
            raise NormalizeError(f"bad_value:{field}")
        return _clean(value)
    raise NormalizeError(f"wrong_type:{field}")


def required_ident(value: Any, field: str, reason: str) -> str:
    found = ident(value, field)
    if not found:
        raise NormalizeError(reason, field)
    return found


def mapping(value: Any, field: str) -> Mapping[str, Any]:
    """A nested object; absent or null reads as empty."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    raise NormalizeError(f"wrong_type:{field}")


def sequence(value: Any, field: str) -> list[Any] | tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return value
    raise NormalizeError(f"wrong_type:{field}")


def integer(value: Any) -> int | None:
    """A count such as retryAttempt or max_retries; anything else reads as unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


_INTEGER = re.compile(r"-?[0-9]{1,11}")
_LEGACY_TIME = "%m/%d/%Y %I:%M:%S %p"  # legacy log alerts: "3/22/2019 1:36:31 PM"


def time_ms(value: Any) -> int | None:
    """Epoch ms from an ISO-8601 string, a legacy alert time, or an epoch number (s or ms)."""
    if isinstance(value, str):
        if not value or len(value) > 40:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:
                parsed = datetime.strptime(value, _LEGACY_TIME)
            except ValueError:
                return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return int(parsed.timestamp() * 1000)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 < value < 1e14:  # also rejects NaN
            return None
        return int(value if value > 1e11 else value * 1000)
    return None


def first_time(received_at_ms: int, *values: Any) -> tuple[int, str]:
    """The first parseable time among ``values`` and its raw form (for alert ids), else receipt."""
    for value in values:
        parsed = time_ms(value)
        if parsed is not None:
            return parsed, str(value)
    return received_at_ms, ""


_FACTORY_ID = re.compile(
    r"/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.datafactory/"
    r"factories/([^/?#\s]+)",
    re.IGNORECASE,
)


def parse_factory(resource_id: Any) -> tuple[str, str, str] | None:
    """(subscription, resource group, factory) from an ARM id, case-insensitive.

    The factory and resource group are lower-cased: ADF names are case-insensitive and the
    diagnostic logs upper-case the whole id, while alerts keep the portal's spelling, so the
    scope must be folded for the same factory to dedup as one.
    """
    if not isinstance(resource_id, str) or len(resource_id) > 2000:
        return None
    return _parse_factory(resource_id)


@functools.lru_cache(maxsize=1024)  # a batch's records share a handful of factory ids
def _parse_factory(resource_id: str) -> tuple[str, str, str] | None:
    found = _FACTORY_ID.search(resource_id)
    if found is None:
        return None
    subscription, group, factory = found.groups()
    return subscription.lower(), group.lower(), factory.lower()


def collect(
    items: Iterable[T],
    build: Callable[[T, list[str]], Alert | None],
    skips: list[str],
) -> list[Alert]:
    """Build one alert per batch entry; a malformed entry does not sink its neighbours.

    ``build`` returns an alert, or None after appending a skip reason. A malformed entry is
    recorded as ``invalid:<reason>`` while other entries produced alerts; if nothing in the
    batch produced an alert, the first error is raised so the whole message is dead-lettered
    with its raw bytes (a broken Failed record must not vanish silently).
    """
    alerts: list[Alert] = []
    errors: list[NormalizeError] = []
    for item in items:
        try:
            alert = build(item, skips)
        except NormalizeError as exc:
            errors.append(exc)
            continue
        if alert is not None:
            alerts.append(alert)
    if errors:
        if not alerts:
            raise errors[0]
        skips.extend(f"invalid:{exc.reason}" for exc in errors)
    return alerts


def compact(details: Mapping[str, str]) -> dict[str, str]:
    """Details without empty values: a missing fact is simply absent."""
    return {key: value for key, value in details.items() if value}


def unique(alerts: list[Alert]) -> list[Alert]:
    """Drop repeats of the same alert id inside one message, keeping order."""
    seen: set[str] = set()
    kept = []
    for alert in alerts:
        if alert.alert_id not in seen:
            seen.add(alert.alert_id)
            kept.append(alert)
    return kept
