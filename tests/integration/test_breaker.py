"""An outage must not become a retry storm: the target's circuit breaker holds calls back."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipemedic.runtime import RecordTail
from pipemedic.stack import EmbeddedStack
from streams.policy import routing
from tests.integration.chain_scenarios import gateway_alert, guid, rules_file, world

pytestmark = pytest.mark.integration

RUNS = {guid(f"outage-run-{i}"): "Flaky" for i in range(8)}


async def _deferred_rows(
    bootstrap: str, seconds: float, longest: float
) -> tuple[list[dict], float]:
    """Rows of steps the open breaker deferred, watched for ``seconds`` and on until one comes
    (at most ``longest``: a loaded machine may need longer to open it); and for how long."""
    rows: list[dict] = []
    started = time.monotonic()
    async with RecordTail(bootstrap, routing.OUTCOMES, "outcome") as tail:
        while (elapsed := time.monotonic() - started) < seconds or (not rows and elapsed < longest):
            rows += [r for r in await tail.poll(300) if "circuit open" in r["detail"]]
    return rows, time.monotonic() - started


def test_a_failing_factory_gets_a_few_probes_not_a_retry_storm(tmp_path):
    outage = world({"Flaky": ["Succeeded"]}, RUNS)
    outage["error_modes"] = [{"path": "*/createRun", "fail_5xx": {"status": 503}}]
    rules = rules_file(tmp_path, {"GatewayTimeout": [1]})
    with EmbeddedStack(
        tmp_path,
        outage,
        rules_file=rules,
        breaker_threshold=3,
        breaker_cooldown_s=5.0,
        transient_backoff_s=(1.0, 1.0, 1.0),
        step_retry_limit=5,
    ) as stack:
        stack.send_raw([gateway_alert("Flaky", run_id) for run_id in RUNS])
        deferred, watched_s = asyncio.run(_deferred_rows(stack.bootstrap, 20, 60))
        calls = stack.simulator.count("POST", "*/createRun")
    # without a breaker: 8 chains x (1 + 5 step retries) = 48 createRun calls in ~10 s.
    # With it: at worst the first attempts of all 8 chains go out together, before any
    # failure is back (no breaker can stop calls already in flight), then one probe per 5 s
    # cool-down over the time watched (20 s, more on a loaded machine): at most 8 + 20 / 5 + 1
    # = 13 in 20 s. At least the 3 failures that open the breaker (measured: 6-10, fewer when
    # the first attempts are spread out)
    assert 3 <= calls <= len(RUNS) + int(watched_s // 5) + 1, (calls, watched_s)
    assert deferred and {r["action"] for r in deferred} == {"retry_pipeline"}
