"""Issue 3 on the real embedded stack: act once and count honestly. (Waiting without blocking,
and retries across a ``kill -9``: test_chain_waits.py.)"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from pipemedic.demo import watch_until_settled
from pipemedic.stack import EmbeddedStack
from tests.integration.chain_scenarios import (
    gateway_alert,
    guid,
    rules_file,
    world,
)

# runs on the default and the compact topic profile (tests/integration/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.both_profiles]


@pytest.fixture(scope="module")
def burst_and_chain(tmp_path_factory, topic_profile):
    """100 copies of one alert, and one run whose reruns keep failing, in one stack."""
    folder = tmp_path_factory.mktemp("chains")
    scenario = world(
        {"Burst": ["Succeeded"], "Stubborn": ["Failed"]},
        {guid("burst-run-1"): "Burst", guid("stubborn-run-1"): "Stubborn"},
    )
    rules = rules_file(folder, {"GatewayTimeout": [1, 1, 1]})
    with EmbeddedStack(folder, scenario, rules_file=rules) as stack:
        stack.send_raw(
            [gateway_alert("Burst", guid("burst-run-1"))] * 100
            + [gateway_alert("Stubborn", guid("stubborn-run-1"))]
        )
        watch = asyncio.run(watch_until_settled(stack, timeout_s=120))
        calls = stack.simulator.matching("POST", "*/createRun")
    return watch, calls


def test_a_burst_of_100_copies_is_acted_on_once(burst_and_chain):
    watch, calls = burst_and_chain
    assert watch.settled
    burst = [
        r
        for r in watch.rows
        if r["run_id"] == guid("burst-run-1") or guid("burst-run-1") in r["chain_id"]
    ]
    states = Counter(r["state"] for r in burst)
    assert states["received"] == 1 and states["duplicate"] == 99
    assert states["executed"] == 1 and states["resolved"] == 1
    assert sum("/pipelines/Burst/createRun" in c.path for c in calls) == 1


def test_a_chain_spans_three_run_ids_and_max_retries_holds(burst_and_chain):
    watch, calls = burst_and_chain
    reruns = [c for c in calls if "/pipelines/Stubborn/createRun" in c.path]
    # each rerun starts from the run that failed before it: three different run ids
    references = [c.query["referencePipelineRunId"] for c in reruns]
    assert (
        len(reruns) == 3 and len(set(references)) == 3 and references[0] == guid("stubborn-run-1")
    )
    chain = [r for r in watch.rows if r["chain_id"].endswith(guid("stubborn-run-1"))]
    executed = [r for r in chain if r["state"] == "executed"]
    assert [r["attempt"] for r in executed] == [1, 2, 3]
    # the run each attempt started is the one the next attempt reran from
    new_runs = [r["new_run_id"] for r in executed]
    assert new_runs[:2] == references[1:] and len(set(new_runs)) == 3
    final = [r for r in chain if r["state"] in ("gave_up", "resolved", "manual")]
    assert [r["state"] for r in final] == ["gave_up"] and "3 attempts exhausted" in final[0][
        "detail"
    ]
