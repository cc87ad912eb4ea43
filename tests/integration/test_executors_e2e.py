"""Every executor end to end: raw alerts in, platform calls out, outcomes back from chDB.

Real Tansu broker, real worker process, the platform simulator over real HTTP. One stack
plays the whole estate (a run, cluster or job per scenario, so the scenarios never meet);
a second, small one has ARM tokens that expire after three calls (so the refresh count is
exact) and the retry playbook. Assertions read the simulator's call log (what pipemedic
did to the platforms) and the audit trail (what it concluded).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest

from pipemedic.demo import watch_until_settled
from pipemedic.stack import EmbeddedStack
from tests.integration.e2e_helpers import (
    ArmCaller,
    PlaybookReceiver,
    Settled,
    adf_activity_record,
    adf_log_alert,
    cluster_terminated,
    databricks_get,
    deliver,
    driver_not_responding,
    job_failed,
    library_install_failed,
    scheduled_requests,
    settle,
    wait_for,
)

pytestmark = pytest.mark.integration

WORLDS = Path(__file__).parent / "worlds"
SETTLE_S = 120.0

# ---- the estate stack: tests/integration/worlds/executors.yaml --------------------------------

SUB, RG, FACTORY = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "rg-exec", "adf-exec-prod"
WS = "5550001112223334"
RUN = {  # the failed ADF run of each pipeline
    "Copy_Orders_To_Lake": "0e1a0001-5d3c-4b7a-9f10-2c3d4e5f6a01",
    "Copy_From_Bronze": "0e1a0002-5d3c-4b7a-9f10-2c3d4e5f6a02",
    "Sync_Crm_Accounts": "0e1a0003-5d3c-4b7a-9f10-2c3d4e5f6a03",
    "Refresh_Dim_Customer": "0e1a0004-5d3c-4b7a-9f10-2c3d4e5f6a04",
    "Load_Ledger": "0e1a0005-5d3c-4b7a-9f10-2c3d4e5f6a05",
}
ROGUE_FACTORY, ROGUE_RUN, ROGUE_WS = (
    "adf-rogue-prod",
    "0e1a0006-5d3c-4b7a-9f10-2c3d4e5f6a06",
    "9990001112223334",
)
ETL, STUCK, ML, BIG, AUTO = (
    "0301-000001-etl01",
    "0301-000002-str02",
    "0301-000003-ml03",
    "0301-000004-big04",
    "0301-000005-auto05",
)
GATEWAY = "Error calling the endpoint 'https://{}'. Response status code: 'GatewayTimeout (504)'."
BLOB_MISSING = (
    "Failure happened on 'Source' side. ErrorCode=UserErrorSourceBlobNotExists,'Type=Microsoft."
    "DataTransfer.Common.Shared.HybridDeliveryException,Message=The required Blob is missing. "
    "ContainerName: bronze, path: {}.,Source=Microsoft.DataTransfer.ClientLibrary,'"
)


def adf_chain(run_id: str, factory: str = FACTORY) -> str:
    return f"adf|{factory}|{run_id}"


def cluster_chain(cluster_id: str, ws: str = WS) -> str:
    return f"dbx|{ws}|cluster|{cluster_id}"


def ending(s: Settled, chain: str) -> tuple[str, int, int]:
    """(final state, attempts, actions executed) of a chain, from chain_summaries."""
    summary = s.chains[chain]
    return summary["final_state"], summary["attempts"], summary["actions_taken"]


def _gateway_alert(
    no: str, pipeline: str, host: str, *, factory: str = FACTORY, rg: str = RG, run_id: str = ""
) -> bytes:
    return adf_log_alert(
        subscription=SUB,
        resource_group=rg,
        factory=factory,
        alert_no=no,
        run_id=run_id or RUN[pipeline],
        pipeline=pipeline,
        activity="Call" + pipeline.split("_")[-1],
        message=GATEWAY.format(host),
    )


ESTATE_ALERTS = [
    _gateway_alert("510000000001", "Copy_Orders_To_Lake", "partner.example.com/orders"),
    adf_activity_record(
        subscription=SUB,
        resource_group=RG,
        factory=FACTORY,
        run_id=RUN["Copy_From_Bronze"],
        pipeline="Copy_From_Bronze",
        activity="CopyBronze",
        message=BLOB_MISSING.format("orders/2026/11/29.parquet"),
    ),
    adf_log_alert(
        subscription=SUB,
        resource_group=RG,
        factory=FACTORY,
        alert_no="510000000003",
        run_id=RUN["Sync_Crm_Accounts"],
        pipeline="Sync_Crm_Accounts",
        activity="CallCrm",
        message="Error calling the endpoint 'https://crm.example.com/accounts'. "
        "Response status code: 'TooManyRequests (429)'.",
    ),
    _gateway_alert("510000000004", "Refresh_Dim_Customer", "mdm.example.com/customers"),
    _gateway_alert("510000000005", "Load_Ledger", "ledger.example.com/entries"),
    _gateway_alert(
        "510000000006",
        "Copy_Orders_To_Lake",
        "partner.example.com/orders",
        factory=ROGUE_FACTORY,
        rg="rg-elsewhere",
        run_id=ROGUE_RUN,
    ),
    *[cluster_terminated(workspace=WS, cluster_id=ETL, name="etl-shared")] * 3,
    driver_not_responding(workspace=WS, cluster_id=STUCK),
    library_install_failed(workspace=WS, cluster_id=ML, name="ml-team", package="pandas==2.2.0"),
    job_failed(workspace=WS, run_id=931001, job_id=7101, name="Orders_Nightly"),
    job_failed(workspace=WS, run_id=931003, job_id=7103, name="Sessionize_Clicks"),
    job_failed(workspace=WS, run_id=931004, job_id=7104, name="Score_Models"),
    cluster_terminated(workspace=ROGUE_WS, cluster_id="0301-000009-far09", name="elsewhere"),
]


def _asked_about_upstream(stack: EmbeddedStack) -> bool:
    return any(
        any(
            f.get("operand") == "PipelineName" and f.get("values") == ["Load_To_Bronze"]
            for f in (call.body or {}).get("filters", ())
        )
        for call in stack.simulator.matching("POST", "*/queryPipelineRuns", 200)
    )


# (chain, attempt) whose executed request is delivered once more after the chain is final
REDELIVERED = (
    (adf_chain(RUN["Copy_Orders_To_Lake"]), 2),
    (cluster_chain(ETL), 1),
    (cluster_chain(STUCK), 1),
    (cluster_chain(ML), 2),
    (f"dbx|{WS}|931001", 2),
    (f"dbx|{WS}|931003", 1),
)


@dataclass
class EstateRun:
    settled: Settled
    first_round_settled: bool
    pages: list  # what the manual playbook received
    upstream_started_at: float
    redelivered_at: float
    libraries: dict  # ML's libraries/cluster-status at the end
    repaired_run: dict  # jobs/runs/get of run 931001 at the end


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> EstateRun:
    with PlaybookReceiver() as pager:
        extras = {  # replaces the demo's extras: this estate's upstream map, fallbacks, pager
            "adf": {"dependencies": {FACTORY: {"Copy_From_Bronze": ["Load_To_Bronze"]}}},
            "databricks": {"library_fallbacks": {"pandas": ["2.1.0", "2.0.3", "1.5.3"]}},
            "playbooks": {"urls": {"manual": pager.url("/page")}},
        }
        with EmbeddedStack(
            tmp_path_factory.mktemp("executors"), WORLDS / "executors.yaml", estate_extras=extras
        ) as stack:
            stack.send_raw(ESTATE_ALERTS)
            # the chain's own execute request waits 2 s in its delay tier: two more copies of
            # it, due now, go straight onto the action topic (three deliveries in all)
            wanted = [(adf_chain(RUN["Refresh_Dim_Customer"]), 1)]
            duplicated = asyncio.run(scheduled_requests(stack, wanted))
            asyncio.run(deliver(stack, duplicated, copies=2))
            # the upstream pipeline runs only once pipemedic has found it missing
            wait_for("an upstream check", lambda: _asked_about_upstream(stack))
            upstream_started_at = time.time()
            ArmCaller(stack).start_run(FACTORY, "Load_To_Bronze")
            first_round = asyncio.run(watch_until_settled(stack, SETTLE_S))
            # a redelivery after the fix (a crash before the commit, say) must start nothing
            redelivered_at = time.time()
            done = asyncio.run(scheduled_requests(stack, REDELIVERED))
            asyncio.run(deliver(stack, done))
            settled = settle(stack, SETTLE_S)
            libraries = databricks_get(stack, WS, "2.0/libraries/cluster-status", cluster_id=ML)
            repaired = databricks_get(
                stack, WS, "2.2/jobs/runs/get", run_id=931001, include_history="true"
            )
    return EstateRun(
        settled,
        first_round.settled,
        pager.deliveries,
        upstream_started_at,
        redelivered_at,
        libraries,
        repaired,
    )


def test_every_chain_settles_in_the_state_its_scenario_expects(estate):
    s = estate.settled
    assert estate.first_round_settled and s.watch.settled
    expected = {
        adf_chain(RUN["Copy_Orders_To_Lake"]): "resolved",
        adf_chain(RUN["Copy_From_Bronze"]): "resolved",
        adf_chain(RUN["Sync_Crm_Accounts"]): "resolved",
        adf_chain(RUN["Refresh_Dim_Customer"]): "resolved",
        adf_chain(RUN["Load_Ledger"]): "manual",
        cluster_chain(ETL): "resolved",
        cluster_chain(STUCK): "resolved",
        cluster_chain(ML): "resolved",
        f"dbx|{WS}|931001": "resolved",
        f"dbx|{WS}|931003": "resolved",
        f"dbx|{WS}|931004": "resolved",
    }
    assert {c: row["final_state"] for c, row in s.chains.items()} == expected


# ---- ADF -------------------------------------------------------------------------------------


def test_retry_pipeline_reruns_from_failure_until_the_second_rerun_succeeds(estate):
    s = estate.settled
    chain = adf_chain(RUN["Copy_Orders_To_Lake"])
    reruns = s.calls_to("POST", "*/pipelines/Copy_Orders_To_Lake/createRun")
    assert [c.status for c in reruns] == [200, 200]
    assert all(
        c.query["isRecovery"] == "true" and c.query["startFromFailure"] == "true" for c in reruns
    )
    first, second = (r["new_run_id"] for r in s.rows_of(chain, "executed"))
    # the first rerun recovers the alerted run; the failed first rerun re-enters the chain
    # and the second rerun recovers that one
    assert [c.query["referencePipelineRunId"] for c in reruns] == [
        RUN["Copy_Orders_To_Lake"],
        first,
    ]
    assert [r["platform_status"] for r in s.rows_of(chain, "failed")] == ["Failed"]
    assert ending(s, chain) == ("resolved", 2, 2)
    # resolved only after the platform said Succeeded: the last status check of the second rerun
    checks = s.calls_to("GET", f"*/pipelineruns/{second}", 200)
    assert len(checks) >= 2  # InProgress, then Succeeded
    (resolved,) = s.rows_of(chain, "resolved")
    assert resolved["at"] >= checks[-1].at * 1000 - 1


def test_upstream_check_waits_for_the_upstream_run_then_reruns(estate):
    s = estate.settled
    chain = adf_chain(RUN["Copy_From_Bronze"])
    (rerun,) = s.calls_to("POST", "*/pipelines/Copy_From_Bronze/createRun", 200)
    assert rerun.query["referencePipelineRunId"] == RUN["Copy_From_Bronze"]
    assert rerun.at > estate.upstream_started_at  # nothing was rerun while the blob was missing
    waits = s.rows_of(chain, "retrying")
    assert waits and all("waiting on upstream: Load_To_Bronze=no run" in r["detail"] for r in waits)
    assert ending(s, chain) == ("resolved", 1, 1)  # waiting spends no attempt


def test_throttled_rerun_waits_for_retry_after_then_succeeds(estate):
    s = estate.settled
    chain = adf_chain(RUN["Sync_Crm_Accounts"])
    throttled, accepted = s.calls_to("POST", "*/pipelines/Sync_Crm_Accounts/createRun")
    assert (throttled.status, accepted.status) == (429, 200)
    assert accepted.at - throttled.at >= 3.0  # Retry-After: 3
    (retrying,) = s.rows_of(chain, "retrying")
    assert retrying["detail"].startswith("throttled:") and retrying["detail"].endswith(
        "again in 3s"
    )
    assert ending(s, chain) == ("resolved", 1, 1)


def test_an_action_request_delivered_three_times_starts_one_run(estate):
    s = estate.settled
    chain = adf_chain(RUN["Refresh_Dim_Customer"])
    assert len(s.calls_to("POST", "*/pipelines/Refresh_Dim_Customer/createRun")) == 1
    # every delivery first looked for a newer run in the failed run's recovery group
    group_checks = [
        c
        for c in s.calls_to("POST", "*/queryPipelineRuns", 200)
        if {"operand": "RunGroupId", "operator": "Equals", "values": [RUN["Refresh_Dim_Customer"]]}
        in c.body["filters"]
    ]
    assert len(group_checks) == 3
    assert len({r["new_run_id"] for r in s.rows_of(chain, "executed")}) == 1
    assert ending(s, chain) == ("resolved", 1, 1)


def test_a_revoked_credential_goes_to_people_without_a_retry(estate):
    # the worker's token is fresh (azure-identity refreshes ahead of expiry), so ARM refusing
    # it is not ours to fix by asking again
    s = estate.settled
    chain = adf_chain(RUN["Load_Ledger"])
    (refused,) = s.calls_to("POST", "*/pipelines/Load_Ledger/createRun")
    assert refused.status == 401
    (manual,) = s.rows_of(chain, "manual")
    assert manual["detail"].startswith("auth:") and "401" in manual["detail"]
    assert s.chains[chain]["attempts"] == 1


def test_alerts_outside_the_estate_are_recorded_as_ignored_and_never_acted_on(estate):
    s = estate.settled
    assert not [c for c in s.calls if ROGUE_FACTORY in c.path or ROGUE_WS in c.path]
    ignored = {r["scope"]: r for r in s.rows if r["state"] == "ignored"}
    assert ignored[ROGUE_FACTORY]["detail"] == f"not in estate: ADF factory '{ROGUE_FACTORY}'"
    assert ignored[ROGUE_WS]["detail"] == f"not in estate: Databricks workspace '{ROGUE_WS}'"
    assert not [r for r in s.rows if r["scope"] in (ROGUE_FACTORY, ROGUE_WS) and r["chain_id"]]


def test_chains_that_need_people_call_the_manual_playbook_with_the_seed_payload(estate):
    pages = {d.body["ticket_id"]: d for d in estate.pages}
    assert set(pages) == {adf_chain(RUN["Load_Ledger"])}  # outside the estate: nobody paged
    page = pages[adf_chain(RUN["Load_Ledger"])]
    assert page.path == "/page"
    assert set(page.body) == {"ticket_id", "error_type", "metadata", "retry_attempt", "max_retries"}
    assert page.body["error_type"] == "GatewayTimeout"
    assert (page.body["retry_attempt"], page.body["max_retries"]) == (1, 3)
    assert page.body["metadata"] | {"message": ""} == {
        "source": "adf",
        "scope": FACTORY,
        "run_id": RUN["Load_Ledger"],
        "pipeline": "Load_Ledger",
        "cluster_id": "",
        "error_code": "2108",
        "message": "",
    }
    assert page.headers["idempotency-key"] == f"{adf_chain(RUN['Load_Ledger'])}:1"


# ---- Databricks ------------------------------------------------------------------------------


def test_restart_cluster_starts_a_terminated_cluster_once_and_waits_for_running(estate):
    s = estate.settled
    chain = cluster_chain(ETL)
    (start,) = s.calls_to("POST", f"/databricks/{WS}/api/*/clusters/start")
    assert start.body == {"cluster_id": ETL} and start.status == 200
    assert not [c for c in s.calls_to("POST", "*/clusters/restart") if c.body["cluster_id"] == ETL]
    # PENDING twice (polls_to_start: 2), then RUNNING; resolved only after that
    checks = [
        c
        for c in s.calls_to("GET", "*/clusters/get", 200)
        if c.query["cluster_id"] == ETL and c.at > start.at
    ]
    assert len(checks) >= 3
    (resolved,) = s.rows_of(chain, "resolved")
    assert resolved["at"] >= checks[2].at * 1000 - 1
    summary = s.chains[chain]
    assert (summary["attempts"], summary["actions_taken"], summary["duplicates"]) == (1, 1, 2)


def test_restart_cluster_restarts_a_running_cluster_whose_driver_hangs(estate):
    s = estate.settled
    restarts = [
        c for c in s.calls_to("POST", "*/clusters/restart") if c.body["cluster_id"] == STUCK
    ]
    assert len(restarts) == 1
    assert not [c for c in s.calls_to("POST", "*/clusters/start") if c.body["cluster_id"] == STUCK]
    assert s.chains[cluster_chain(STUCK)]["final_state"] == "resolved"


def test_library_fallback_swaps_the_version_and_restarts_until_one_installs(estate):
    s = estate.settled
    steps = [
        (c.path.rsplit("/", 2)[-2:], c.body)
        for c in s.calls
        if c.method == "POST" and (c.body or {}).get("cluster_id") == ML
    ]
    pypi = lambda spec: {"cluster_id": ML, "libraries": [{"pypi": {"package": spec}}]}  # noqa: E731
    restart = (["clusters", "restart"], {"cluster_id": ML})
    assert steps == [
        (["libraries", "uninstall"], pypi("pandas==2.2.0")),
        (["libraries", "install"], pypi("pandas==2.1.0")),
        restart,  # 2.1.0 fails as well: the chain's second attempt
        (["libraries", "uninstall"], pypi("pandas==2.1.0")),
        (["libraries", "install"], pypi("pandas==2.0.3")),
        restart,
    ]
    installed = {
        st["library"]["pypi"]["package"]: st["status"]
        for st in estate.libraries["library_statuses"]
    }
    assert installed == {"pandas==2.0.3": "INSTALLED"}
    assert ending(s, cluster_chain(ML)) == ("resolved", 2, 2)


def test_repair_job_reruns_failed_tasks_and_names_the_latest_repair(estate):
    s = estate.settled
    repairs = [c for c in s.calls_to("POST", "*/jobs/runs/repair") if c.body["run_id"] == 931001]
    history = [h["id"] for h in estate.repaired_run["repair_history"] if h["type"] == "REPAIR"]
    assert len(repairs) == len(history) == 2
    assert repairs[0].body == {"run_id": 931001, "rerun_all_failed_tasks": True}
    # the first repair failed: the second must name it, as Databricks insists
    assert repairs[1].body == {
        "run_id": 931001,
        "rerun_all_failed_tasks": True,
        "latest_repair_id": history[0],
    }
    assert ending(s, f"dbx|{WS}|931001") == ("resolved", 2, 2)


def test_scale_cluster_grows_a_fixed_size_cluster_by_half(estate):
    s = estate.settled
    (resize,) = [c for c in s.calls_to("POST", "*/clusters/resize") if c.body["cluster_id"] == BIG]
    assert resize.body == {"cluster_id": BIG, "num_workers": 6}
    # the job run that ran out of memory is then repaired on the larger cluster (issue 16)
    (repair,) = [c for c in s.calls_to("POST", "*/jobs/runs/repair") if c.body["run_id"] == 931003]
    assert repair.at > resize.at
    assert ending(s, f"dbx|{WS}|931003") == ("resolved", 1, 2)


def test_scale_cluster_raises_an_autoscaling_floor_capped_at_its_maximum(estate):
    s = estate.settled
    (resize,) = [c for c in s.calls_to("POST", "*/clusters/resize") if c.body["cluster_id"] == AUTO]
    # 6 -> 9 wanted, kept below the maximum: Databricks wants max_workers > min_workers
    assert resize.body == {"cluster_id": AUTO, "autoscale": {"min_workers": 7, "max_workers": 8}}
    (repair,) = [c for c in s.calls_to("POST", "*/jobs/runs/repair") if c.body["run_id"] == 931004]
    assert repair.at > resize.at
    assert s.chains[f"dbx|{WS}|931004"]["final_state"] == "resolved"


def test_execute_requests_redelivered_after_the_fix_start_nothing_new(estate):
    s = estate.settled
    acting = (
        "*/createRun",
        "*/clusters/start",
        "*/clusters/restart",
        "*/clusters/resize",
        "*/libraries/install",
        "*/libraries/uninstall",
        "*/jobs/runs/repair",
    )
    late = [c for c in s.calls if c.at >= estate.redelivered_at]
    assert [c for c in late if c.method == "POST" and any(fnmatch(c.path, p) for p in acting)] == []
    # each redelivery did look at its target before deciding there was nothing to do
    looked = {c.query.get("cluster_id") or c.query.get("run_id") for c in late if c.method == "GET"}
    assert {ETL, STUCK, ML, BIG, "931001"} <= looked
    assert any(fnmatch(c.path, "*/queryPipelineRuns") for c in late)
    # found the fix already through, each closed at once: the audit trail did not move
    chains = {chain for chain, _ in REDELIVERED}
    assert [
        r for r in s.rows if r["chain_id"] in chains and r["at"] >= estate.redelivered_at * 1000
    ] == []
    assert all(s.chains[chain]["final_state"] == "resolved" for chain in chains)


# ---- the auth stack: tokens live a second; retry_pipeline is a playbook ---------------------

OPS_SUB, OPS_RG, OPS_FACTORY = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "rg-ops", "adf-ops-prod"
OPS_BLOB_RUN = "0e1b0001-5d3c-4b7a-9f10-2c3d4e5f6b01"
OPS_FEED_RUN = "0e1b0002-5d3c-4b7a-9f10-2c3d4e5f6b02"


@pytest.fixture(scope="module")
def ops(tmp_path_factory) -> tuple[Settled, list]:
    with PlaybookReceiver({"accepted": True, "ticket": "LA-4711"}) as playbook:
        extras = {"playbooks": {"urls": {"retry_pipeline": playbook.url("/retry")}}}
        with EmbeddedStack(
            tmp_path_factory.mktemp("ops"), WORLDS / "expiring_tokens.yaml", estate_extras=extras
        ) as stack:
            stack.send_raw(
                [
                    adf_activity_record(
                        subscription=OPS_SUB,
                        resource_group=OPS_RG,
                        factory=OPS_FACTORY,
                        run_id=OPS_BLOB_RUN,
                        pipeline="Copy_From_Bronze",
                        activity="CopyBronze",
                        message=BLOB_MISSING.format("ledger/2026/11/29.parquet"),
                    ),
                    adf_log_alert(
                        subscription=OPS_SUB,
                        resource_group=OPS_RG,
                        factory=OPS_FACTORY,
                        alert_no="520000000002",
                        run_id=OPS_FEED_RUN,
                        pipeline="Sync_Partner_Feed",
                        activity="CallPartner",
                        message=GATEWAY.format("partner.example.com/feed"),
                    ),
                ]
            )
            settled = settle(stack, SETTLE_S)
    return settled, playbook.deliveries


def test_an_expiring_token_is_replaced_before_arm_refuses_it(ops):
    s, _ = ops
    arm = [c for c in s.calls if "/providers/Microsoft.DataFactory/" in c.path]
    tokens = s.calls_to("POST", "*/oauth2/v2.0/token", 200)
    # the chain's ARM calls span more than one token lifetime: azure-identity fetched anew
    assert len(tokens) >= 2
    assert len(tokens) <= len(arm)  # one fetch at most per call: no refresh storm
    assert [c for c in arm if c.status == 401] == []
    assert len(s.calls_to("POST", "*/pipelines/Copy_From_Bronze/createRun", 200)) == 1
    assert ending(s, adf_chain(OPS_BLOB_RUN, OPS_FACTORY)) == ("resolved", 1, 1)


def test_a_playbook_action_calls_the_webhook_instead_of_the_platform(ops):
    s, deliveries = ops
    (call,) = deliveries
    chain = adf_chain(OPS_FEED_RUN, OPS_FACTORY)
    assert call.path == "/retry"
    assert call.body["ticket_id"] == chain
    assert call.body["error_type"] == "GatewayTimeout"
    assert (call.body["retry_attempt"], call.body["max_retries"]) == (1, 3)
    assert call.body["metadata"]["run_id"] == OPS_FEED_RUN
    assert call.headers["idempotency-key"] == f"{chain}:1"
    assert not s.calls_to("POST", "*/pipelines/Sync_Partner_Feed/createRun")
    # an action of ours, though carried out elsewhere: remediated, not self-healed
    assert ending(s, chain) == ("resolved", 1, 1)
    assert s.chains[chain]["result"] == "remediated"
