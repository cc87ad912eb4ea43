"""The mark a replay leaves on its records, and how an alert carries it.

``pipemedic replay`` adds the header ``pipemedic-replay: <capture id>`` to every record it
sends. Ingest copies it into the alert (``details["replayed_from"]``: the details travel with
the alert through every stage, and no schema changes), and the chain policy sends a marked
failure to observe-only when ``PIPEMEDIC_REPLAYED_OBSERVE_ONLY`` is on (the default): a
capture replayed into a live pipeline is recorded, never acted on, and pages nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from streams.policy.model import Alert

REPLAY_HEADER = "pipemedic-replay"
REPLAYED_DETAIL = "replayed_from"

Headers = Iterable[tuple[str, bytes | None]]


def replay_mark(headers: Headers | Mapping[str, bytes] | None) -> str:
    """The capture id a record's headers name ("" for a record no replay sent)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in pairs:
        if key == REPLAY_HEADER:
            return (value or b"").decode("utf-8", "replace") or "replay"
    return ""


def with_mark(headers: Headers, capture_id: str) -> tuple[tuple[str, bytes], ...]:
    """``headers`` with the mark of ``capture_id`` (replacing an older replay's mark)."""
    kept = tuple((k, v or b"") for k, v in headers if k != REPLAY_HEADER)
    return (*kept, (REPLAY_HEADER, capture_id.encode()))


def marked(alert: Alert, capture_id: str) -> Alert:
    if not capture_id:
        return alert
    return replace(alert, details={**alert.details, REPLAYED_DETAIL: capture_id})


def is_replayed(alert: Alert) -> bool:
    return bool(alert.details.get(REPLAYED_DETAIL))
