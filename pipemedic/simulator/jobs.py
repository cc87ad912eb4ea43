"""Simulated Databricks Jobs: job runs, repairs and run-now, for one workspace.

Decides how runs evolve. ``runs/repair`` re-runs the failed tasks of a *finished* run; it
insists on ``latest_repair_id`` once a run has been repaired (missing: 400
INVALID_PARAMETER_VALUE; stale: 400 INVALID_STATE), as Databricks does. ``run-now`` launches
exactly one run per ``idempotency_token``. A repaired or new run shows RUNNING for
``polls_to_finish`` ``runs/get`` calls, then ends as its script says (``repairs`` per run,
``runs`` per job; the last outcome repeats). Unknown runs and jobs answer 400
INVALID_PARAMETER_VALUE "... does not exist", the form databricks-sdk turns into
``ResourceDoesNotExist`` for ``runs/get``.

``runs/get-output`` answers for one task run (a job run of one task stands for its task; of
several: 400, as Databricks refuses it): ``metadata`` (the task run), and for a failed task
its ``error`` and ``error_trace`` (the world's, or the failure message of a failed repair),
else an empty ``notebook_output``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipemedic.simulator.protocol import SimError
from pipemedic.simulator.world import JobSpec, TaskSpec, WorkspaceSpec

_FINISHED = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
_FAILED = ("FAILED", "TIMEDOUT", "CANCELED", "UPSTREAM_FAILED", "UPSTREAM_CANCELED")


@dataclass
class TaskState:
    task_key: str
    run_id: int
    life_cycle_state: str
    result_state: str
    state_message: str
    cluster_id: str
    attempt_number: int = 0
    error: str = ""  # runs/get-output of this task run
    error_trace: str = ""

    def failed(self) -> bool:
        return self.result_state in _FAILED or self.life_cycle_state == "INTERNAL_ERROR"

    def as_json(self) -> dict[str, Any]:
        state = {
            "life_cycle_state": self.life_cycle_state,
            "state_message": self.state_message,
            "user_cancelled_or_timedout": False,
        }
        if self.result_state:
            state["result_state"] = self.result_state
        task = {
            "task_key": self.task_key,
            "run_id": self.run_id,
            "attempt_number": self.attempt_number,
            "state": state,
        }
        if self.cluster_id:
            task["cluster_instance"] = {"cluster_id": self.cluster_id}
        return task


@dataclass
class RunState:
    run_id: int
    job: JobSpec
    attempt_number: int
    original_attempt_run_id: int
    life_cycle_state: str
    result_state: str
    state_message: str
    termination: dict[str, str]
    tasks: list[TaskState]
    start_time: int  # epoch ms
    end_time: int = 0
    script: tuple[str, ...] = ("SUCCESS",)  # outcomes of successive repairs
    repair_polls: int = 1
    failure: dict[str, str] = field(default_factory=dict)  # termination of a failed attempt
    repairs_started: int = 0
    outcome: str = ""  # how the current attempt/repair ends
    rerunning: list[TaskState] = field(default_factory=list)
    polls_left: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, include_history: bool) -> dict[str, Any]:
        state = {
            "life_cycle_state": self.life_cycle_state,
            "state_message": self.state_message,
            "user_cancelled_or_timedout": False,
        }
        if self.result_state:
            state["result_state"] = self.result_state
        status: dict[str, Any] = {
            "state": "TERMINATED" if self.life_cycle_state in _FINISHED else self.life_cycle_state
        }
        if self.termination:
            status["termination_details"] = dict(self.termination)
        run = {
            "job_id": self.job.job_id,
            "run_id": self.run_id,
            "run_name": self.job.name,
            "number_in_job": self.run_id,
            "run_type": "JOB_RUN",
            "attempt_number": self.attempt_number,
            "original_attempt_run_id": self.original_attempt_run_id,
            "state": state,
            "status": status,
            "tasks": [task.as_json() for task in self.tasks],
            "start_time": self.start_time,
            "end_time": self.end_time,
            "run_page_url": f"https://sim.databricks/#job/{self.job.job_id}/run/{self.run_id}",
        }
        if include_history:
            run["repair_history"] = self.history
        return run

    def output_of(self, task: TaskState) -> dict[str, Any]:
        """``runs/get-output`` of one of this run's task runs."""
        metadata = {
            **task.as_json(),
            "job_id": self.job.job_id,
            "run_name": task.task_key,
            "original_attempt_run_id": task.run_id,
            "run_type": "JOB_RUN",
            "start_time": self.start_time,
            "end_time": self.end_time,
            "run_page_url": f"https://sim.databricks/#job/{self.job.job_id}/run/{task.run_id}",
        }
        if not task.failed():
            return {"metadata": metadata, "notebook_output": {}}
        output: dict[str, Any] = {"metadata": metadata, "error": task.error or task.state_message}
        if task.error_trace:
            output["error_trace"] = task.error_trace
        return output


class JobsSim:
    def __init__(self, spec: WorkspaceSpec, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.jobs = {job.job_id: job for job in spec.jobs}
        self.runs_started: dict[int, int] = {}  # run-now runs per job
        self.idempotency: dict[str, int] = {}
        ids = [r.run_id for r in spec.runs] + list(self.jobs) + [0]
        self._ids = itertools.count(max(ids) + 1000)
        self.runs: dict[int, RunState] = {}
        now_ms = self._now_ms()
        for run in spec.runs:
            job = self.jobs[run.job_id]
            tasks = run.tasks or job.tasks
            self.runs[run.run_id] = RunState(
                run_id=run.run_id,
                job=job,
                attempt_number=run.attempt_number,
                original_attempt_run_id=run.original_attempt_run_id or run.run_id,
                life_cycle_state=run.life_cycle_state,
                result_state=run.result_state,
                state_message=run.state_message,
                termination={
                    "code": run.termination_code,
                    "type": run.termination_type,
                    "message": run.state_message,
                },
                tasks=[
                    self._task(t, t.life_cycle_state, t.result_state, t.state_message)
                    for t in tasks
                ],
                start_time=now_ms - int(run.age_s * 1000),
                end_time=now_ms - int(run.age_s * 500),
                script=run.repairs,
                repair_polls=run.polls_to_finish,
                failure={
                    "code": run.termination_code,
                    "type": run.termination_type,
                    "message": run.state_message or job.failure_message,
                },
            )

    def get_run(self, params: Mapping[str, Any]) -> dict[str, Any]:
        run = self._run(params.get("run_id"))
        if run.outcome and run.life_cycle_state not in _FINISHED:
            if run.polls_left > 0:
                run.polls_left -= 1
            else:
                self._finish(run)
        return run.as_json(str(params.get("include_history", "false")).lower() == "true")

    def get_output(self, params: Mapping[str, Any]) -> dict[str, Any]:
        run_id = _number(params.get("run_id"), "run_id")
        for run in self.runs.values():
            for task in run.tasks:
                if task.run_id == run_id:
                    return run.output_of(task)
        run = self._run(run_id)
        if len(run.tasks) != 1:
            raise SimError(
                400,
                "Retrieving the output of runs with multiple tasks is not supported. Please "
                "retrieve the output of each individual task run instead.",
            )
        return run.output_of(run.tasks[0])

    def repair(self, body: Mapping[str, Any]) -> dict[str, Any]:
        run = self._run(body.get("run_id"))
        if run.life_cycle_state not in _FINISHED:
            raise SimError(
                400,
                f"Run {run.run_id} is still {run.life_cycle_state} and cannot be repaired.",
                "INVALID_STATE",
            )
        latest = run.history[-1]["id"] if run.history else None
        given = body.get("latest_repair_id")
        if latest is not None and given is None:
            raise SimError(400, "latest_repair_id must be provided when repairing a repaired run.")
        if given is not None and given != latest:
            raise SimError(
                400, f"latest_repair_id {given} is not the latest repair {latest}.", "INVALID_STATE"
            )
        if body.get("rerun_all_failed_tasks"):
            chosen = [t for t in run.tasks if t.failed()]
        else:
            keys = set(body.get("rerun_tasks") or ())
            chosen = [t for t in run.tasks if t.task_key in keys]
            if not keys or len(chosen) != len(keys):
                raise SimError(
                    400, "rerun_tasks must name existing tasks, or set rerun_all_failed_tasks."
                )
        if not chosen:
            raise SimError(400, f"Run {run.run_id} has no failed tasks to repair.")
        repair_id = next(self._ids)
        if not run.history:
            run.history.append(
                {
                    "type": "ORIGINAL",
                    "id": run.run_id,
                    "start_time": run.start_time,
                    "end_time": run.end_time,
                }
            )
        run.history.append(
            {"type": "REPAIR", "id": repair_id, "start_time": self._now_ms(), "task_run_ids": []}
        )
        for task in chosen:
            task.run_id, task.attempt_number = next(self._ids), task.attempt_number + 1
            task.life_cycle_state, task.result_state, task.state_message = "RUNNING", "", ""
            task.error, task.error_trace = "", ""
            run.history[-1]["task_run_ids"].append(task.run_id)
        outcome = run.script[min(run.repairs_started, len(run.script) - 1)]
        run.repairs_started += 1
        self._begin(run, outcome, chosen, run.repair_polls)
        return {"repair_id": repair_id}

    def run_now(self, body: Mapping[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(_number(body.get("job_id"), "job_id"))
        if job is None:
            raise SimError(400, f"Job {body.get('job_id')} does not exist.")
        token = body.get("idempotency_token")
        if token is not None and (not isinstance(token, str) or len(token) > 64):
            raise SimError(400, "idempotency_token must be a string of at most 64 characters.")
        if token in self.idempotency:
            return {"run_id": self.idempotency[token], "number_in_job": self.idempotency[token]}
        nth = self.runs_started.get(job.job_id, 0)
        self.runs_started[job.job_id] = nth + 1
        run_id = next(self._ids)
        tasks = [self._task(t, "PENDING", "", "") for t in job.tasks]
        run = RunState(
            run_id=run_id,
            job=job,
            attempt_number=0,
            original_attempt_run_id=run_id,
            life_cycle_state="PENDING",
            result_state="",
            state_message="",
            termination={},
            tasks=tasks,
            start_time=self._now_ms(),
            script=job.repairs,
            repair_polls=job.polls_to_finish,
            failure={
                "code": "RUN_EXECUTION_ERROR",
                "type": "CLIENT_ERROR",
                "message": job.failure_message,
            },
        )
        self.runs[run_id] = run
        self._begin(run, job.runs[min(nth, len(job.runs) - 1)], tasks, job.polls_to_finish)
        if token is not None:
            self.idempotency[token] = run_id
        return {"run_id": run_id, "number_in_job": run_id}

    def _begin(self, run: RunState, outcome: str, tasks: list[TaskState], polls: int) -> None:
        run.outcome, run.rerunning, run.polls_left = outcome, tasks, polls
        run.life_cycle_state, run.result_state, run.state_message = "RUNNING", "", ""
        run.termination, run.end_time = {}, 0
        if polls <= 0:
            self._finish(run)

    def _finish(self, run: RunState) -> None:
        ok = run.outcome == "SUCCESS"
        message = "" if ok else run.failure.get("message", "")
        for index, task in enumerate(run.rerunning):
            task.life_cycle_state = "TERMINATED"
            task.result_state = (
                "SUCCESS" if ok else (run.outcome if index == 0 else "UPSTREAM_FAILED")
            )
            task.state_message = (
                message if index == 0 else ("" if ok else "An upstream task failed.")
            )
            task.error = message if index == 0 else ""
        run.life_cycle_state, run.result_state, run.state_message = (
            "TERMINATED",
            run.outcome,
            message,
        )
        run.end_time = self._now_ms()
        ok_termination = {"code": "SUCCESS", "type": "SUCCESS", "message": ""}
        run.termination = ok_termination if ok else dict(run.failure)
        if run.history:
            run.history[-1]["end_time"] = run.end_time
        run.outcome, run.rerunning = "", []

    def _task(self, spec: TaskSpec, life_cycle: str, result: str, message: str) -> TaskState:
        return TaskState(
            spec.task_key,
            next(self._ids),
            life_cycle,
            result,
            message,
            spec.cluster_id,
            error=spec.error if result else "",
            error_trace=spec.error_trace if result else "",
        )

    def _run(self, value: Any) -> RunState:
        run_id = _number(value, "run_id")
        run = self.runs.get(run_id)
        if run is None:
            raise SimError(400, f"Run {run_id} does not exist.")
        return run

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _number(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SimError(400, f"{name} must be a number, got {value!r}.") from None
