"""pipemedic tune on a seeded ClickHouse (chDB) history proposes what the history implies,
and its patch is a rules file ``pipemedic whatif --against`` accepts on top of the rules."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipemedic import cli
from pipemedic.reporting import clickhouse_config
from pipemedic.whatif import check_rules, layered_rules
from streams.adapters.clickhouse import open_store
from streams.policy.model import Alert, Outcome
from streams.policy.rules import Classifier, load_rules
from streams.settings import Settings

pytestmark = pytest.mark.integration

NOW = int(time.time() * 1000)
HOUR = 3_600_000
SCOPE = "adf-sales-prod"


def chain(n: int, error_type: str, result: str, attempts: int) -> list[Outcome]:
    """The rows of one chain that ended ``remediated`` or ``gave_up`` after ``attempts``."""
    chain_id, at = f"{error_type}-{n}", NOW - 48 * HOUR + n * 60_000
    common = dict(
        chain_id=chain_id,
        dedup_key=chain_id,
        source="adf",
        scope=SCOPE,
        error_type=error_type,
        action="retry_pipeline",
        max_attempts=3,
    )
    rows = [Outcome(event_id=f"{chain_id}:received", at=at, state="received", **common)]
    for attempt in range(1, attempts + 1):
        t = at + attempt * 1000
        rows += [
            Outcome(
                event_id=f"{chain_id}:s{attempt}",
                at=t,
                state="scheduled",
                attempt=attempt,
                **common,
            ),
            Outcome(
                event_id=f"{chain_id}:e{attempt}",
                at=t + 100,
                state="executed",
                attempt=attempt,
                cost_usd=0.25,
                **common,
            ),
        ]
    end = at + (attempts + 1) * 1000
    final = "resolved" if result == "remediated" else "gave_up"
    detail = "" if final == "resolved" else f"{attempts} attempts exhausted"
    rows.append(
        Outcome(
            event_id=f"{chain_id}:end",
            at=end,
            state=final,
            attempt=attempts,
            detail=detail,
            **common,
        )
    )
    return rows


def history() -> list[Outcome]:
    rows: list[Outcome] = []
    for n in range(12):  # retries fix 2 of 12 gateway timeouts: below 20%
        rows += chain(n, "GatewayTimeout", "remediated" if n < 2 else "gave_up", 1 if n < 2 else 3)
    for n in range(10):  # throttling: always fixed by the first retry, after a 30 s wait
        rows += chain(n, "ThrottlingError", "remediated", 1)
    for n in range(10):  # connection failures: fixed first time too, but the wait is 5 s
        rows += chain(n, "HttpConnectionFailed", "remediated", 1)
    for n in range(10):  # server errors: half fixed, not rare enough to hand over
        rows += chain(n, "InternalServerError", "remediated" if n % 2 else "gave_up", 3)
    for n, message in enumerate(
        [f"Snowflake warehouse WH_ETL is suspended (query {q})" for q in (8812, 8813, 9001, 9002)]
        + [f"Quota for tenant {t} reached" for t in (1, 2)]  # twice only: not recurring yet
    ):
        rows.append(
            Outcome(
                event_id=f"u{n}",
                at=NOW - HOUR,
                chain_id=f"u{n}",
                dedup_key=f"u{n}",
                state="received",
                source="adf",
                scope=SCOPE,
                error_type="Unknown",
                action="manual",
                detail=f"new failure | message: {message}",
            )
        )
    for n in range(3):
        rows.append(
            Outcome(
                event_id=f"c{n}",
                at=NOW - HOUR,
                chain_id=f"cap{n}",
                dedup_key=f"cap{n}",
                state="manual",
                source="adf",
                scope="adf-finance",
                detail="daily cost cap: $40.00 of $40.00 spent today, this action would add $0.25",
            )
        )
    old = chain(99, "DatabricksTimeoutError", "gave_up", 3)  # before --since: not counted
    return rows + [Outcome(**{**r.to_dict(), "at": NOW - 60 * 24 * HOUR}) for r in old]


def test_tune_proposes_what_the_history_implies_and_its_patch_feeds_whatif(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIPEMEDIC_DATA_DIR", str(tmp_path / "data"))
    for name in ("PIPEMEDIC_RULES_FILE", "PIPEMEDIC_CLICKHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    store = open_store(clickhouse_config(Settings()))
    try:
        store.ensure_schema()
        store.insert(history())
    finally:
        store.close()

    patch = tmp_path / "patch.yaml"
    assert cli.main(["tune", "--since", "30d", "--out", str(patch), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    by_kind = {}
    for proposal in found["proposals"]:
        by_kind.setdefault(proposal["kind"], []).append(proposal)

    [manual] = by_kind["manual"]
    assert manual["subject"] == "GatewayTimeout"
    assert manual["evidence"]["chains_tried"] == 12 and manual["evidence"]["remediated"] == 2
    assert {r["name"] for r in manual["rules"]} == {"http-gateway", "adf-timeout"}

    [schedule] = by_kind["schedule"]  # not HttpConnectionFailed: its first wait is 5 s
    assert schedule["subject"] == "ThrottlingError"
    assert schedule["schedules"] == {"ThrottlingError": [7, 60, 120, 300, 600]}

    [rule] = by_kind["rule"]  # the quota message came twice only
    assert rule["evidence"]["alerts"] == 4
    assert rule["evidence"]["samples"][0] == "Snowflake warehouse WH_ETL is suspended (query 8812)"

    caps = {
        (p["evidence"]["cap"], p["evidence"]["target"]): p["evidence"]["hits"]
        for p in by_kind["cap"]
    }
    assert caps == {("daily_cost_cap", "adf-finance"): 3, ("max_retries", SCOPE): 15}
    assert "DatabricksTimeoutError" not in json.dumps(found)  # older than --since

    # the patch is what whatif --against applies on top of the rules in force
    text = patch.read_text()
    assert text.startswith("# pipemedic tune --since 30d") and "chains_tried: 12" in text
    layered = layered_rules(tmp_path, None, patch)
    check_rules(layered)
    rules, schedules = load_rules(layered[1])
    classify = Classifier(rules, schedules)
    gateway = Alert(
        "a",
        "adf",
        "pipeline_run",
        scope=SCOPE,
        run_id="r",
        message="Response status code: 'GatewayTimeout (504)'",
    )
    snowflake = Alert(
        "b",
        "adf",
        "pipeline_run",
        scope=SCOPE,
        run_id="s",
        message="Snowflake warehouse WH_ETL is suspended (query 1)",
    )
    assert classify(gateway).action == "manual"
    assert classify(snowflake).error_type == "Unclassified1"
    assert schedules["ThrottlingError"] == (7, 60, 120, 300, 600)
