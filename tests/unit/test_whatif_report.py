"""whatif's pure parts: the comparison, the page, the layered rules and the derived world."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pipemedic.simulator import load_world
from pipemedic.stack import DEMO_DATA
from pipemedic.whatif import layered_rules
from pipemedic.whatif_report import differences, html_page, side_by_side, summarize
from pipemedic.whatif_world import derive_world
from streams.policy.rules import load_rules


def chain(error_type: str, result: str, *, actions: int = 1, ttr_ms: int | None = 5000) -> dict:
    return {
        "error_type": error_type,
        "action": "retry_pipeline",
        "result": result,
        "resolved_by": "pipemedic" if result == "remediated" else "",
        "actions_taken": actions,
        "attempts": max(actions, 1),
        "cost_usd": 0.25 * actions,
        "time_to_resolution_ms": ttr_ms if result == "remediated" else None,
    }


A = [chain("GatewayTimeout", "remediated"), chain("ThrottlingError", "remediated")]
B = [
    chain("GatewayTimeout", "manual", actions=0),
    chain("ThrottlingError", "remediated", ttr_ms=6000),
]


def test_differences_name_what_changed_and_not_timing_noise() -> None:
    a, b = summarize(A), summarize(B)
    changed = differences(a, b)
    assert set(changed) == {"GatewayTimeout"}  # 5 s vs 6 s is noise, not a difference
    assert changed["GatewayTimeout"]["hand_offs"] == [0, 1]
    assert changed["GatewayTimeout"]["actions_by_type"] == [{"retry_pipeline": 1}, {}]
    slow = summarize([chain("ThrottlingError", "remediated", ttr_ms=60_000)])
    assert differences(summarize([A[1]]), slow) == {"ThrottlingError": {"mean_ttr_s": [5.0, 60.0]}}
    rows = side_by_side(a, b)
    assert rows[-1]["error_type"] == "(all)" and rows[0]["hand_offs"] == "0 → 1"


def test_the_page_is_self_contained() -> None:
    a, b = summarize(A), summarize(B)
    report = {
        "alerts": 2,
        "policies": {
            "A": {"rules": "a.yaml", "by_error_type": a},
            "B": {"rules": "b", "by_error_type": b},
        },
        "table": side_by_side(a, b),
        "differences": differences(a, b),
    }
    page = html_page(report)
    assert page.count("<svg") == 4 and "<table>" in page
    assert not re.search(r"<script|<link|\bsrc=|\bhref=|url\(", page)


def test_b_is_a_with_the_patch_on_top(tmp_path: Path) -> None:
    patch = tmp_path / "patch.yaml"
    patch.write_text(
        yaml.safe_dump(
            {
                "rules": [{"name": "http-gateway", "action": "manual"}],
                "schedules": {"GatewayTimeout": [1]},
            }
        )
    )
    a, b = layered_rules(tmp_path, None, patch)
    assert a == DEMO_DATA / "rules.yaml"
    rules, schedules = load_rules(b)
    assert next(r for r in rules if r.name == "http-gateway").action.value == "manual"
    assert schedules["GatewayTimeout"] == (1,)
    assert schedules["ThrottlingError"] == (3, 4, 5, 6, 8)  # A's own schedules stay


def test_a_world_derived_from_the_demo_alerts_loads_and_fails_once() -> None:
    lines = [line.encode() for line in (DEMO_DATA / "alerts.jsonl").read_text().splitlines()]
    doc = derive_world(line for line in lines if line.strip())
    loaded = load_world(doc)
    [factory] = loaded.factories
    assert factory.name == "adf-sales-prod"
    pipelines = {p["name"]: p for p in doc["factories"][0]["pipelines"]}
    assert pipelines["Copy_Orders_To_Lake"]["reruns"] == ["Failed", "Succeeded"]
    runs = {r["run_id"] for r in doc["factories"][0]["runs"]}
    assert "8d1f3c52-7a4e-4b0b-9f5e-0c3e2a1b6d01" in runs
    [workspace] = doc["workspaces"]
    assert {c["cluster_id"] for c in workspace["clusters"]} >= {
        "0214-093512-etl01",
        "0214-101010-ml02",
    }
    assert workspace["failing_libraries"] == ["pandas==2.2.0"]
