"""The Grafana dashboards: well-formed, wired to the provisioned data source, and every
panel's SQL runs on the ``outcomes`` schema (embedded chDB, a few rows)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from streams.adapters.clickhouse import ChdbStore
from streams.policy.model import Outcome

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards/json").glob("*.json"))
DATASOURCE = yaml.safe_load(
    (ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text()
)["datasources"][0]
PLUGIN = "grafana-clickhouse-datasource"


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep theirs inside


QUERIES = [
    pytest.param(target["rawSql"], target.get("format"), id=f"{path.stem}:{panel['title']}")
    for path in DASHBOARDS
    for panel in panels(json.loads(path.read_text()))
    for target in panel.get("targets", [])
]

# The plugin's macros (pkg/macros/macros.go), expanded the way it does for a fixed range.
FROM_S, TO_S, INTERVAL_S = 0, 4_102_444_800, 3_600  # 1970 .. 2100, hourly buckets
MACROS = [
    (r"\$__timeFilter\(([^()]+)\)", rf"\1 >= toDateTime({FROM_S}) AND \1 <= toDateTime({TO_S})"),
    (
        r"\$__timeInterval\(([^()]+)\)",
        rf"toStartOfInterval(toDateTime(\1), INTERVAL {INTERVAL_S} second)",
    ),
    (r"\$__fromTime\b", f"toDateTime({FROM_S})"),
    (r"\$__toTime\b", f"toDateTime({TO_S})"),
    (r"\$__interval_s\b", str(INTERVAL_S)),
]


VARIABLES = ("source", "scope", "pipeline", "error_type")
Selection = dict[str, list[str]]  # a variable left out is "All"


def _conditional_all(sql: str, selection: Selection) -> str:
    """``$__conditionalAll(condition, $var)``: ``1=1`` when ``var`` is All, else the
    condition (pkg/macros/macros.go; its arguments are split at the top-level comma)."""
    while (start := sql.find("$__conditionalAll(")) >= 0:
        depth, i = 0, start + len("$__conditionalAll")
        while True:  # to the parenthesis that closes the macro's
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            if depth == 0:
                break
            i += 1
        condition, variable = sql[start + len("$__conditionalAll(") : i].rsplit(",", 1)
        name = variable.strip().removeprefix("$").strip("{}")
        assert name in VARIABLES, name
        sql = sql[:start] + (condition if name in selection else "1=1") + sql[i + 1 :]
    return sql


def expand(sql: str, selection: Selection | None = None) -> str:
    selection = selection or {}
    sql = _conditional_all(sql, selection)
    for name, values in selection.items():  # Grafana's singlequote format
        quoted = ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
        sql = sql.replace(f"${{{name}:singlequote}}", quoted)
    for pattern, replacement in MACROS:
        sql = re.sub(pattern, replacement, sql)
    assert "$" not in sql, f"unexpanded macro or variable in: {sql}"
    return sql


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_shape(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard.get("id") is None  # provisioned dashboards get their id from Grafana
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["title"]
        assert panel["datasource"] == {"type": PLUGIN, "uid": DATASOURCE["uid"]}
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["editorType"] == "sql" and target["format"] in (0, 1)
            # the plugin's QueryType for format 0 (time series) / 1 (table)
            assert target["queryType"] == ("timeSeries" if target["format"] == 0 else "table")
            assert re.search(r"\bpipemedic\.(outcomes|chains)\b", target["rawSql"])


def test_required_panels_are_there() -> None:
    titles = " | ".join(
        p["title"].lower() for path in DASHBOARDS for p in panels(json.loads(path.read_text()))
    )
    for needed in (
        "success rate",
        "success rate by error type",
        "time to resolution",
        "retries",
        "cost",
        "suppressed",
        "final state",
        "actions by type",
        "dead letters",
        "records seen",
    ):
        assert needed in titles, needed


# fmt: off
SAMPLE = (
    Outcome("s1", 1_700_000_000_000, "c1", "k1", "received", alert_id="a1", source="adf",
            scope="adf-prod", pipeline="Copy_Bronze", error_type="GatewayTimeout",
            action="retry_pipeline", first_seen_at=1_700_000_000_000),
    Outcome("s2", 1_700_000_001_000, "c1", "k1", "duplicate", alert_id="a2", error_type="GatewayTimeout"),
    Outcome("s3", 1_700_000_060_000, "c1", "k1", "executed", attempt=1, cost_usd=0.4,
            error_type="GatewayTimeout", action="retry_pipeline", first_seen_at=1_700_000_000_000),
    Outcome("s4", 1_700_000_600_000, "c1", "k1", "resolved", attempt=1,
            error_type="GatewayTimeout", action="retry_pipeline", first_seen_at=1_700_000_000_000),
    Outcome("s5", 1_700_000_000_500, "c2", "k2", "received", alert_id="b1", source="databricks",
            scope="1234567890", pipeline="Rollup_Daily", error_type="DatabricksPermissionDenied"),
    Outcome("s6", 1_700_000_000_600, "c2", "k2", "observed", action="manual",
            error_type="DatabricksPermissionDenied"),
    Outcome("s7", 1_700_000_000_700, "c2", "k2", "manual", error_type="DatabricksPermissionDenied"),
    Outcome("s8", 1_700_000_002_000, "", "alerts-raw/0/17", "dead_letter", detail="not_json"),
    Outcome("s9", 1_700_000_060_000, "", "ingested/adf_diagnostic", "ingested", source="adf",
            detail='{"alerts": 2, "dropped": 97, "ignored": 0, "invalid": 1, "seen": 100, '
                   '"shape": "adf_diagnostic", "since": 1700000000000, "worker": "h:1"}'),
)
# fmt: on


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    s = ChdbStore(tmp_path_factory.mktemp("dashboards") / "chdb")
    try:
        s.ensure_schema()
        s.insert(SAMPLE)
        yield s
    finally:
        s.close()


@pytest.mark.parametrize(("sql", "fmt"), QUERIES)
def test_panel_sql_runs(store: ChdbStore, sql: str, fmt: int) -> None:
    rows = store.query(expand(sql))
    if fmt == 0:  # time series: the first column is the time, rows in time order
        assert rows, "a time series over the sample should have points"
        first = next(iter(rows[0]))
        assert first == "time"
        times = [r["time"] for r in rows]
        assert times == sorted(times)


def dashboard_variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_is_filtered_by_every_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = dashboard_variables(dashboard)
    assert set(variables) == set(VARIABLES)
    for variable in variables.values():
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": PLUGIN, "uid": DATASOURCE["uid"]}
        assert variable["multi"] and variable["includeAll"] and "allValue" not in variable
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            for name in VARIABLES:  # every time filter is narrowed by all four
                condition = f"$__conditionalAll({name} IN (${{{name}:singlequote}}), ${name})"
                used = target["rawSql"].count(condition)
                assert used == target["rawSql"].count("$__timeFilter("), (panel["title"], name)


VARIABLE_QUERIES = [
    pytest.param(v, id=f"{path.stem}:{v['name']}")
    for path in DASHBOARDS
    for v in json.loads(path.read_text())["templating"]["list"]
]


@pytest.mark.parametrize("variable", VARIABLE_QUERIES)
def test_variable_queries_list_the_values_and_cascade(store: ChdbStore, variable: dict) -> None:
    name = variable["name"]
    listed = [next(iter(r.values())) for r in store.query(expand(variable["query"]))]
    assert listed == sorted({getattr(o, name) for o in SAMPLE} - {""})
    if name != "source":  # a chosen source narrows the later lists
        narrowed = store.query(expand(variable["query"], {"source": ["databricks"]}))
        assert [next(iter(r.values())) for r in narrowed] == sorted(
            {getattr(o, name) for o in SAMPLE if o.source == "databricks"} - {""}
        )


def _empty(rows: list[dict]) -> bool:
    return all(value in (None, 0) for r in rows for k, value in r.items() if k != "time")


@pytest.mark.parametrize(("sql", "fmt"), QUERIES)
@pytest.mark.parametrize("name", VARIABLES)
def test_panels_follow_the_variables(store: ChdbStore, sql: str, fmt: int, name: str) -> None:
    everything = store.query(expand(sql))
    # a value nothing carries: no panel shows anything
    assert _empty(store.query(expand(sql, {name: ["no such value"]})))
    # every value the sample carries (and "" for rows without one) is the same as All
    values = sorted({getattr(o, name) for o in SAMPLE})
    assert store.query(expand(sql, {name: values})) == everything


def test_a_chosen_source_shows_only_its_chains(store: ChdbStore) -> None:
    [by_result] = [
        target["rawSql"]
        for path in DASHBOARDS
        for panel in panels(json.loads(path.read_text()))
        if panel["title"] == "Chains by result"
        for target in panel["targets"]
    ]
    assert sorted(r["result"] for r in store.query(expand(by_result))) == ["manual", "remediated"]
    assert store.query(expand(by_result, {"source": ["adf"]})) == [
        {"result": "remediated", "chains": 1}
    ]
    assert store.query(expand(by_result, {"scope": ["1234567890"]})) == [
        {"result": "manual", "chains": 1}
    ]


def test_what_ingest_saw_is_drawn_from_the_ingested_rows(store: ChdbStore) -> None:
    [over_time, by_shape] = [
        target["rawSql"]
        for path in DASHBOARDS
        for panel in panels(json.loads(path.read_text()))
        if panel["title"] in ("Records seen, failures, acted on", "Records seen by shape")
        for target in panel["targets"]
    ]
    rows = store.query(expand(over_time))
    assert sum(r["seen"] for r in rows) == 100 and sum(r["failures"] for r in rows) == 2
    assert sum(r["acted_on"] for r in rows) == 1  # the one executed row of the sample
    assert store.query(expand(by_shape)) == [
        {
            "shape": "adf_diagnostic",
            "seen": 100,
            "alerts": 2,
            "no_action_needed": 97,
            "outside_estate": 0,
            "invalid": 1,
        }
    ]
    assert store.query(expand(by_shape, {"source": ["databricks"]})) == []
