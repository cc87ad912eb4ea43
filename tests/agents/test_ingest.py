"""Ingest without a broker: an alert outside the estate is recorded as ignored at once and
goes no further; one inside goes on to dedup."""

from __future__ import annotations

from types import SimpleNamespace

from agents.ingest import _ingest_one
from agents.outbox import Outbox
from streams.codecs import decode_items
from streams.policy.rules import DEFAULT_RULES, DEFAULT_SCHEDULES, Classifier
from streams.policy.scope import EstateScope
from tests.agents.helpers import fake_topology
from tests.integration.chain_scenarios import gateway_alert, guid

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
