"""Mutation fuzzing: whatever arrives, normalize answers with alerts or a NormalizeError.

The fixtures are mutated structurally (drop, retype, replace, swap, duplicate values) and at
byte level (truncate, flip, insert). ``unexpected:*`` reasons are the normaliser's safety net
for its own bugs, so seeing one fails the test as surely as a raw exception would.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.policy.model import Alert, Kind, Signal, Source
from streams.policy.normalize import (
    NormalizeError,
    alerts_from_adf_runs,
    alerts_from_databricks_run,
    normalize,
)
from streams.policy.rules import classify

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
ENRICHMENT = ("databricks_run_get_failed.json", "adf_query_pipeline_runs.json")
INGEST = sorted(p for p in FIXTURES.glob("*.json") if p.name not in ENRICHMENT)
NOW = 1_715_090_000_000

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    math.nan,
    math.inf,
    10**30,
    "",
    "null",
    "x" * 300,
    "\ud800",
    "1601-01-01T00:00:00Z",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59Z",
    "3/22/2019 1:36:31 PM",
    "Failed",
    "Succeeded",
    "InProgress",
    "Resolved",
    "ActivityRuns",
    "PipelineRuns",
    "TERMINATED",
    "jobs.on_failure",
    "cluster.terminated",
    "FAILED",
    "TIMEDOUT",
    "INTERNAL_ERROR",
    "SUCCESS",
    '{"errorCode": 5}',
    "{not json",
    "[]",
    [],
    {},
    [{}],
    [None],
    {"a": {"b": []}},
    [[[[]]]],
    {"name": "RunId"},
    {"name": 5, "value": []},
]


def containers(node: Any, found: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            containers(child, found)
    return found


def mutate_tree(tree: Any, rng: random.Random) -> Any:
    for _ in range(rng.randint(1, 3)):
        nodes = [n for n in containers(tree, []) if n]
        if not nodes:
            break
        node = rng.choice(nodes)
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        op = rng.random()
        if op < 0.3:
            del node[key]
        elif op < 0.75:
            node[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif op < 0.85:  # a value from elsewhere in the payload
            other = rng.choice(nodes)
            node[key] = copy.deepcopy(
                rng.choice(list(other.values()) if isinstance(other, dict) else other)
            )
        elif op < 0.95 and isinstance(node, list):
            node.extend(copy.deepcopy(node[: rng.randint(1, 3)]))
        else:
            node[key] = json.dumps(node[key]) if not isinstance(node[key], str) else [node[key]]
    return tree


def mutate_bytes(raw: bytes, rng: random.Random) -> bytes:
    op = rng.random()
    if op < 0.5:
        return raw[: rng.randrange(len(raw))]
    position = rng.randrange(len(raw))
    if op < 0.8:
        return raw[:position] + bytes([rng.randrange(256)]) + raw[position + 1 :]
    return (
        raw[:position]
        + rng.choice([b"{", b"]", b'"', b"\\", b"\x00", b"\xff", b"NaN"])
        + raw[position:]
    )


def check_alerts(alerts: Any) -> None:
    assert isinstance(alerts, list)
    for alert in alerts:
        assert isinstance(alert, Alert)
        assert alert.source in {s.value for s in Source}
        assert alert.kind in {k.value for k in Kind}
        assert alert.signal in {s.value for s in Signal}
        assert isinstance(alert.alert_id, str) and len(alert.alert_id) == 32
        for name in (
            "scope",
            "run_id",
            "sub_id",
            "group_id",
            "pipeline",
            "job_id",
            "cluster_id",
            "error_code",
            "failure_type",
            "message",
            "library",
        ):
            value = getattr(alert, name)
            assert isinstance(value, str), name
            value.encode("utf-8")  # no lone surrogates reach the Avro encoder
        assert isinstance(alert.occurred_at, int) and isinstance(alert.platform_retries_left, int)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in alert.details.items())
        classify(alert)  # whatever normalize lets through, classify can take


def outcome(call) -> str:
    try:
        check_alerts(call())
        return "alerts"
    except NormalizeError as error:
        assert error.reason and not error.reason.startswith("unexpected"), error
        return error.reason


def test_ten_thousand_mutated_payloads_give_alerts_or_normalize_errors() -> None:
    rng = random.Random(20240507)
    originals = [p.read_bytes() for p in INGEST]
    outcomes: dict[str, int] = {}
    total = 12_000
    for _ in range(total):
        raw = rng.choice(originals)
        if rng.random() < 0.2:
            raw = mutate_bytes(raw, rng)
        else:
            raw = json.dumps(mutate_tree(json.loads(raw), rng)).encode()
        result = outcome(lambda raw=raw: normalize(raw, received_at_ms=NOW))
        outcomes[result] = outcomes.get(result, 0) + 1
    assert sum(outcomes.values()) == total >= 10_000
    # the mutations must reach deep: plenty of alerts and plenty of distinct reasons
    assert outcomes["alerts"] > total // 4
    assert len(outcomes) > 15, outcomes


def test_mutated_enrichment_bodies_give_alerts_or_normalize_errors() -> None:
    rng = random.Random(7)
    webhooks = [
        normalize((FIXTURES / n).read_bytes(), received_at_ms=NOW)[0]
        for n in ("databricks_task_failure_webhook.json", "databricks_job_failure_webhook.json")
    ]
    metric = normalize(
        (FIXTURES / "azure_metric_pipeline_failed.json").read_bytes(), received_at_ms=NOW
    )[0]
    run_body = (FIXTURES / "databricks_run_get_failed.json").read_bytes()
    runs_body = (FIXTURES / "adf_query_pipeline_runs.json").read_bytes()
    seen = set()
    for _ in range(2_000):
        run = mutate_tree(json.loads(run_body), rng)
        seen.add(
            outcome(
                lambda run=run: alerts_from_databricks_run(
                    rng.choice(webhooks), run, received_at_ms=NOW
                )
            )
        )
        runs = mutate_tree(json.loads(runs_body), rng)
        seen.add(
            outcome(
                lambda runs=runs: alerts_from_adf_runs(
                    metric,
                    runs.get("value", runs) if isinstance(runs, dict) else runs,
                    received_at_ms=NOW,
                )
            )
        )
    assert "alerts" in seen and len(seen) > 3


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "records",
        "schemaId",
        "data",
        "event_type",
        "event",
        "library_statuses",
        "events",
        "cluster_id",
        "type",
        "termination_reason",
        "workspace_id",
        "run",
        "task",
        "job",
        "cluster",
        "library",
        "category",
        "status",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, JSON, max_size=6))
def test_arbitrary_json_under_the_shape_keys(payload: dict[str, Any]) -> None:
    outcome(lambda: normalize(json.dumps(payload).encode(), received_at_ms=NOW))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    outcome(lambda: normalize(raw, received_at_ms=NOW))
