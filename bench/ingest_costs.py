"""Where an ingested record's CPU goes, stage by stage, without broker or framework.

    python bench/ingest_costs.py [--batches 100] [--runs-per-batch 50]

Runs pipemedic's own code for the batched diagnostic-log path of ``bench/ingest.py`` in
this process, one stage after another over the same inputs (100-record ADF diagnostic
messages; by default 50 runs each with its activity and pipeline record): normalise +
classify, build and Avro-encode the classified batches, decode them, decide dedup, encode
and decode the chain events, move the chains, encode and decode the audit rows and turn them
into ClickHouse ``JSONEachRow``. No Kafka, no Faust, no ClickHouse: this is the floor under
``records_per_s`` that our code sets before the framework adds its own cost.

Baseline in the same run: ``json.loads`` of the same messages (the least any consumer of
them does). Prints microseconds per record per stage, the total, ``ratio_vs_json_parse`` and
``ceiling_records_per_s`` (one core, our code alone).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from ingest import diagnostic_batches

from agents.ingest import classify_alert
from agents.outbox import partition_for
from streams.adapters.clickhouse import encode_rows
from streams.codecs import decode_items, encode, encode_items
from streams.policy.chains import ChainPolicy, on_event
from streams.policy.dedup import DedupEntry, Verdict, decide, dedup_key, outcome_for
from streams.policy.model import ChainEvent, ClassifiedAlert, Outcome
from streams.policy.normalize import normalize
from streams.policy.rules import Classifier

BATCH = 500  # items per batch message, about what a busy partition gets


def chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


class Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = work()
        self.seconds[name] = time.perf_counter() - start
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--runs-per-batch", type=int, default=50, choices=(50, 100))
    args = parser.parse_args()
    payloads, records, runs = diagnostic_batches(args.batches, args.runs_per_batch)
    classifier = Classifier()
    policy = ChainPolicy(mode="observe", page_hook=False)
    s = Stages()

    baseline = s.run("(baseline) json.loads", lambda: [json.loads(p) for p in payloads])
    del baseline

    def ingest() -> list[ClassifiedAlert]:
        return [
            classify_alert(a, classifier, received_at=1, origin="alerts-raw/0/0")
            for p in payloads
            for a in normalize(p, received_at_ms=1)
        ]

    classified = s.run("normalise + classify", ingest)
    bodies = s.run(
        "classified: to_dict + partition + encode",
        lambda: [
            encode_items("classified_alert", [r.to_dict() for r in part])
            for part in chunks(classified)
            if [partition_for(dedup_key(r.alert), 4) for r in part]
        ],
    )
    decoded = s.run(
        "classified: decode + from_dict",
        lambda: [
            ClassifiedAlert.from_dict(d)
            for b in bodies
            for d in decode_items("classified_alert", b)
        ],
    )

    def dedup() -> tuple[list[ChainEvent], list[Outcome]]:
        table: dict[str, dict[str, Any]] = {}
        events, rows = [], []
        for record in decoded:
            key = dedup_key(record.alert)
            stored = table.get(key)
            decision = decide(
                DedupEntry.from_dict(stored) if stored else None,
                record.alert,
                now_ms=5,
                horizon_ms=10**9,
            )
            if decision.verdict is Verdict.NEW_FAILURE:
                events.append(
                    ChainEvent(
                        kind="failure",
                        chain_id=decision.chain_id,
                        dedup_key=key,
                        at=5,
                        alert=record.alert,
                        classification=record.classification,
                    )
                )
            row = outcome_for(decision, record, key, now_ms=5)
            if row is not None:
                rows.append(row)
            table[key] = decision.entry.to_dict()
        return events, rows

    events, rows = s.run("dedup: decide", dedup)
    events = s.run(
        "chain events: encode + decode",
        lambda: [
            ChainEvent.from_dict(d)
            for part in chunks(events)
            for d in decode_items(
                "chain_event", encode_items("chain_event", [e.to_dict() for e in part])
            )
        ],
    )

    def chains() -> list[Outcome]:
        out: list[Outcome] = []
        for event in events:
            step = on_event(None, event, now_ms=6, policy=policy)
            out += step.outcomes
            if step.schedule is not None:
                encode("action_request", step.schedule.to_dict())
            json.dumps(step.chain.to_dict())  # the table's changelog value
        return out

    rows += s.run("chains: decide", chains)
    decoded_rows = s.run(
        "outcomes: encode + decode",
        lambda: [
            Outcome.from_dict(d)
            for part in chunks(rows)
            for d in decode_items("outcome", encode_items("outcome", [r.to_dict() for r in part]))
        ],
    )
    s.run("outcomes: JSONEachRow", lambda: [encode_rows(part) for part in chunks(decoded_rows)])

    print(
        f"== {records} records in {len(payloads)} messages, {runs} runs, {len(rows)} audit rows =="
    )
    ours = 0.0
    for name, seconds in s.seconds.items():
        if not name.startswith("(baseline)"):
            ours += seconds
        print(f"  {name:42s} {seconds / records * 1e6:7.1f} us/record")
    parse = s.seconds["(baseline) json.loads"]
    print(f"  {'pipemedic code, all stages':42s} {ours / records * 1e6:7.1f} us/record")
    print(f"ratio_vs_json_parse: {ours / parse:.1f}")
    print(f"ceiling_records_per_s: {records / ours:,.0f}")


if __name__ == "__main__":
    main()
