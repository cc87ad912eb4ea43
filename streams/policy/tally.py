"""What ingest saw, counted per shape, for the audit trail: records seen, passed on as alerts,
dropped as needing no action, ignored as outside the estate, invalid.

Most of what an estate sends needs no action and is dropped before it costs a row (a
succeeded activity, a queued pipeline run): so the audit trail would never show it, and
"records seen / failures / acted on" could not be drawn from it. Each worker adds up what its
ingest stage saw and, every while, writes one ``ingested`` row per shape it saw anything of
(``detail`` is the counts as JSON; the dashboard sums them). The counts of a window are lost
with a worker that dies inside it, as a Prometheus counter's would be; the alerts themselves
are not (each has its own rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from streams.policy.ids import event_id
from streams.policy.model import Outcome, OutcomeState, Source

# the platform each shape comes from, when it tells (an Azure Monitor alert may be either)
SHAPE_SOURCE = {
    "adf_diagnostic": Source.ADF.value,
    "databricks_webhook": Source.DATABRICKS.value,
    "databricks_event": Source.DATABRICKS.value,
    "databricks_libraries": Source.DATABRICKS.value,
    "databricks_cluster_events": Source.DATABRICKS.value,
    "databricks_cluster": Source.DATABRICKS.value,
}
COUNTS = ("seen", "alerts", "dropped", "ignored", "invalid")


def message_counts(alerts: int, skipped: tuple[str, ...], ignored: int) -> dict[str, int]:
    """What became of one raw message's records: ``alerts`` found (``ignored`` of them outside
    the estate) and the reasons of the records that gave none (``invalid:...`` for a malformed
    record). The metrics endpoint and the tally count the same split."""
    invalid = sum(1 for reason in skipped if reason.startswith("invalid:"))
    return {
        "seen": alerts + len(skipped),
        "alerts": alerts - ignored,
        "ignored": ignored,
        "dropped": len(skipped) - invalid,
        "invalid": invalid,
    }


@dataclass
class IngestTally:
    """Counts per shape since ``since_ms`` (the start of the window)."""

    since_ms: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, shape: str, counts: dict[str, int]) -> None:
        """One raw message's :func:`message_counts`."""
        total = self.counts.setdefault(shape, dict.fromkeys(COUNTS, 0))
        for name in COUNTS:
            total[name] += counts[name]

    def close(self, now_ms: int, worker: str) -> tuple[Outcome, ...]:
        """The window's rows (none when nothing was seen); a new window starts at ``now_ms``."""
        rows = tuple(
            Outcome(
                event_id=event_id("ingested", worker, shape, str(self.since_ms)),
                at=now_ms,
                chain_id="",
                dedup_key=f"ingested/{shape}",
                state=OutcomeState.INGESTED.value,
                source=SHAPE_SOURCE.get(shape, ""),
                detail=json.dumps(
                    {"shape": shape, **counts, "since": self.since_ms, "worker": worker},
                    sort_keys=True,
                ),
            )
            for shape, counts in sorted(self.counts.items())
        )
        self.counts = {}
        self.since_ms = now_ms
        return rows
