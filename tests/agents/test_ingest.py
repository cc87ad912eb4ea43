"""Ingest without a broker: an alert outside the estate is recorded as ignored at once and
goes no further; one inside goes on to dedup."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import REGISTRY

from agents.ingest import _ingest_one
from agents.outbox import Outbox
from streams.codecs import decode_items
from streams.policy.rules import DEFAULT_RULES, DEFAULT_SCHEDULES, Classifier
from streams.policy.scope import EstateScope
from tests.agents.helpers import fake_topology
from tests.integration.chain_scenarios import gateway_alert, guid

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
SCOPE = EstateScope.of(factories=["ADF-Sales-Prod"], workspaces=["4417362907193652"])


async def ingest(payload: bytes):
    topo = fake_topology()
    outbox = Outbox(topo)
    message = SimpleNamespace(topic="alerts-raw", partition=0, offset=7, value=payload)
    classifier = Classifier(DEFAULT_RULES, DEFAULT_SCHEDULES)
    await _ingest_one(topo, classifier, SCOPE, outbox, message)
    await outbox.flush()
    classified = [
        item
        for _, body, _ in topo.classified.sent
        for item in decode_items("classified_alert", body)
    ]
    rows = [item for _, body, _ in topo.outcomes.sent for item in decode_items("outcome", body)]
    return classified, rows


async def test_an_alert_outside_the_estate_is_recorded_as_ignored_and_goes_no_further():
    payload = gateway_alert("Load", guid("rogue")).replace(b"adf-sales-prod", b"adf-rogue-prod")
    classified, rows = await ingest(payload)
    assert classified == []
    [row] = rows
    assert row["state"] == "ignored" and row["chain_id"] == ""
    assert row["detail"] == "not in estate: ADF factory 'adf-rogue-prod'"


async def test_an_alert_inside_the_estate_goes_on_whatever_the_case_of_its_factory():
    classified, rows = await ingest(gateway_alert("Load", guid("ours")))
    assert [c["alert"]["run_id"] for c in classified] == [guid("ours")] and rows == []


def counted(shape: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "pipemedic_ingest_records_total", {"shape": shape, "outcome": outcome}
        )
        or 0.0
    )


async def test_every_record_of_a_diagnostic_batch_is_counted_by_what_became_of_it():
    before = {o: counted("adf_diagnostic", o) for o in ("alert", "dropped", "ignored")}
    batch = (FIXTURES / "adf_diagnostic_mixed_batch.json").read_bytes()
    await ingest(batch.replace(b"MYFACTORYNAME", b"ADF-SALES-PROD"))
    records = len(json.loads(batch)["records"])
    after = {o: counted("adf_diagnostic", o) - before[o] for o in before}
    assert after["alert"] > 0 and after["dropped"] > 0 and after["ignored"] == 0
    assert after["alert"] + after["dropped"] + counted("adf_diagnostic", "invalid") >= records


async def test_records_outside_the_estate_are_counted_as_ignored():
    before = counted("adf_diagnostic", "ignored")
    await ingest((FIXTURES / "adf_diagnostic_mixed_batch.json").read_bytes())  # MYFACTORYNAME
    assert counted("adf_diagnostic", "ignored") > before


async def test_what_ingest_saw_is_written_as_one_row_per_shape():
    from agents.ingest import send_tally
    from streams.policy.tally import IngestTally

    topo = fake_topology()
    tally = IngestTally(since_ms=topo.clock.now_ms())
    outbox = Outbox(topo)
    classifier = Classifier(DEFAULT_RULES, DEFAULT_SCHEDULES)
    mixed = (FIXTURES / "adf_diagnostic_mixed_batch.json").read_bytes()
    message = SimpleNamespace(topic="alerts-raw", partition=0, offset=7, value=mixed)
    ours = EstateScope.of(factories=["MyFactoryName"], workspaces=[])
    await _ingest_one(topo, classifier, ours, outbox, message, tally)
    await outbox.flush()
    topo.outcomes.sent.clear()
    await send_tally(topo, tally, "host:1")
    [row] = [item for _, body, _ in topo.outcomes.sent for item in decode_items("outcome", body)]
    counts = json.loads(row["detail"])
    records = json.loads(mixed)["records"]
    assert row["state"] == "ingested" and counts["shape"] == "adf_diagnostic"
    assert counts["seen"] == len(records)
    assert counts["alerts"] + counts["ignored"] + counts["dropped"] + counts["invalid"] == len(
        records
    )
    assert counts["alerts"] == 2 and counts["ignored"] == 0  # the failed activity and pipeline
    await send_tally(topo, tally, "host:1")  # nothing since: nothing written
    assert len(topo.outcomes.sent) == 1
