"""What ingest saw, per shape, becomes one ``ingested`` row per window."""

from __future__ import annotations

import json

from streams.policy.tally import IngestTally, message_counts


def test_a_window_gives_one_row_per_shape_with_its_counts():
    tally = IngestTally(since_ms=1_000)
    tally.add("adf_diagnostic", message_counts(3, ("in_progress",) * 95 + ("invalid:x",), 1))
    tally.add("adf_diagnostic", message_counts(0, ("activity_succeeded",) * 4, 0))
    tally.add("azure_monitor", message_counts(1, (), 0))
    rows = tally.close(61_000, "host:1")
    assert [(r.state, r.source, r.chain_id, r.at) for r in rows] == [
        ("ingested", "adf", "", 61_000),
        ("ingested", "", "", 61_000),  # an Azure Monitor alert may be about either platform
    ]
    counts = [json.loads(r.detail) for r in rows]
    assert counts[0] == {
        "shape": "adf_diagnostic",
        "seen": 103,
        "alerts": 2,
        "ignored": 1,
        "dropped": 99,
        "invalid": 1,
        "since": 1_000,
        "worker": "host:1",
    }
    assert counts[1]["seen"] == counts[1]["alerts"] == 1


def test_the_next_window_starts_empty_and_keeps_its_own_ids():
    tally = IngestTally(since_ms=0)
    tally.add("adf_diagnostic", message_counts(1, (), 0))
    (first,) = tally.close(60_000, "host:1")
    assert tally.close(120_000, "host:1") == ()  # nothing seen: no row
    tally.add("adf_diagnostic", message_counts(1, (), 0))
    (later,) = tally.close(180_000, "host:1")
    assert json.loads(later.detail)["since"] == 120_000
    assert len({first.event_id, later.event_id}) == 2
    other = IngestTally(since_ms=0)
    other.add("adf_diagnostic", message_counts(1, (), 0))
    (beside,) = other.close(60_000, "host:2")  # another worker, the same window
    assert beside.event_id != first.event_id
