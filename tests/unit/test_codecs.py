"""Batch messages round-trip exactly, with and without a classification."""

from __future__ import annotations

import pytest

from streams.codecs import decode, decode_items, encode, encode_items, items_of
from streams.policy.model import Alert, ChainEvent, Classification, ClassifiedAlert, Outcome

ALERT = Alert(alert_id="a1", source="adf", kind="pipeline_run", run_id="r1", details={"k": "v"})
GATEWAY = Classification("GatewayTimeout", "low", "retry_pipeline", 3, (10, 60, 300), "rule:x")


@pytest.mark.parametrize("classification", [GATEWAY, None])
def test_classified_alert_batches_round_trip(classification):
    records = [
        ClassifiedAlert(
            alert=ALERT, received_at=i, origin=f"t/0/{i}", classification=classification
        )
        for i in range(3)
    ]
    body = encode_items("classified_alert", [r.to_dict() for r in records])
    assert [ClassifiedAlert.from_dict(d) for d in decode_items("classified_alert", body)] == records


@pytest.mark.parametrize("classification", [GATEWAY, None])
def test_chain_event_batches_round_trip(classification):
    event = ChainEvent(
        kind="failure",
        chain_id="c1",
        dedup_key="k1",
        at=5,
        alert=ALERT,
        classification=classification,
    )
    body = encode_items("chain_event", [event.to_dict(), event.to_dict()])
    assert [ChainEvent.from_dict(d) for d in items_of("chain_event", body)] == [event, event]


def test_outcome_batches_and_single_records():
    row = Outcome(event_id="e1", at=1, chain_id="c1", dedup_key="k1", state="received")
    assert [
        Outcome.from_dict(d) for d in items_of("outcome", encode_items("outcome", [row.to_dict()]))
    ] == [row]
    # topics that are not batched carry one record per message
    single = encode("alert", ALERT.to_dict())
    assert items_of("alert", single) == [decode("alert", single)]


def test_encoding_does_not_change_the_callers_dict():
    item = ClassifiedAlert(alert=ALERT, received_at=1, classification=GATEWAY).to_dict()
    encode_items("classified_alert", [item])
    assert isinstance(item["classification"], dict)
