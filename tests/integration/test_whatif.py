"""pipemedic whatif on the demo alerts: the shipped rules against a patch that hands gateway
timeouts to people report exactly that difference, as a table, JSON and an offline page.

Slow (about a minute on 2 cores): two real pipelines run side by side, each until every
chain is final. ``-m "not slow"`` leaves it out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipemedic import cli
from pipemedic.stack import DEMO_DATA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATCH = Path(__file__).resolve().parents[1] / "fixtures" / "whatif" / "gateway_manual.yaml"


def test_moving_gateway_timeouts_to_manual_differs_in_exactly_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIPEMEDIC_DATA_DIR", str(tmp_path / "data"))
    page = tmp_path / "whatif.html"
    code = cli.main(
        [
            "whatif",
            "--alerts",
            str(DEMO_DATA / "alerts.jsonl"),
            "--world",
            str(DEMO_DATA / "world.yaml"),
            "--against",
            str(PATCH),
            "--json",
            "--html",
            str(page),
            "--timeout",
            "180",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert all(p["settled"] for p in report["policies"].values())

    assert set(report["differences"]) == {"GatewayTimeout"}
    a, b = (report["policies"][label]["by_error_type"] for label in ("A", "B"))
    assert a["GatewayTimeout"]["chains"] == b["GatewayTimeout"]["chains"] == 2
    assert (a["GatewayTimeout"]["remediated"], a["GatewayTimeout"]["hand_offs"]) == (2, 0)
    assert (b["GatewayTimeout"]["remediated"], b["GatewayTimeout"]["hand_offs"]) == (0, 2)
    assert a["GatewayTimeout"]["actions_by_type"] == {"retry_pipeline": 3}
    assert b["GatewayTimeout"]["actions_by_type"] == {}
    for kind in set(a) - {"GatewayTimeout", "(all)"}:  # the rest did the same things
        same = ("chains", "remediated", "hand_offs", "actions_by_type", "attempts", "cost_usd")
        assert {k: a[kind][k] for k in same} == {k: b[kind][k] for k in same}, kind

    html = page.read_text()
    assert html.count("<svg") == 4 and "GatewayTimeout" in html
    # opens offline: nothing is fetched (the only URL is the SVG namespace)
    assert not re.search(r"<script|<link|\bsrc=|\bhref=|@import|url\(", html)
    assert set(re.findall(r"https?://[^'\" ]+", html)) == {"http://www.w3.org/2000/svg"}
