"""Simulated SQL warehouses: the statement execution API, for one workspace.

Decides how a statement runs. ``POST /api/2.0/sql/statements`` needs a ``statement`` and a
``warehouse_id`` of the world (unknown: 400 "... does not exist"); ``wait_timeout`` is
``0s`` or 5 to 50 seconds (default 10s), anything else 400. With ``0s`` the answer comes at
once, PENDING, and the statement shows RUNNING for the warehouse's ``polls_to_finish``
``GET /api/2.0/sql/statements/{id}`` calls before it ends; with a wait it ends before the
answer (the simulator does not make anyone wait). A statement matching one of the
warehouse's ``failing_statements`` ends FAILED; ``CREATE TABLE [IF NOT EXISTS] name`` adds
``name`` to the workspace's tables (without IF NOT EXISTS an existing table FAILS with
``TABLE_OR_VIEW_ALREADY_EXISTS``), so a test can see what its DDL did. Unknown statement
ids answer 404 RESOURCE_DOES_NOT_EXIST.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipemedic.simulator.protocol import SimError
from pipemedic.simulator.world import WarehouseSpec, WorkspaceSpec

_WAIT = re.compile(r"(\d{1,2})s")
_CREATE = re.compile(
    r"\s*CREATE\s+TABLE\s+(?P<guard>IF\s+NOT\s+EXISTS\s+)?(?P<name>[`\w.]+)", re.IGNORECASE
)


@dataclass
class StatementState:
    statement_id: str
    text: str
    warehouse: WarehouseSpec
    state: str = "PENDING"
    polls_left: int = 0
    error: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {"state": self.state}
        if self.error:
            status["error"] = dict(self.error)
            status["sql_state"] = "42000"
        answer: dict[str, Any] = {"statement_id": self.statement_id, "status": status}
        if self.state == "SUCCEEDED":
            answer["manifest"] = {
                "format": "JSON_ARRAY",
                "schema": {"column_count": 0, "columns": []},
                "total_row_count": 0,
                "truncated": False,
            }
            answer["result"] = {"row_count": 0, "row_offset": 0, "chunk_index": 0}
        return answer


class WarehousesSim:
    def __init__(self, spec: WorkspaceSpec) -> None:
        self.warehouses = {w.warehouse_id: w for w in spec.sql_warehouses}
        self.tables = {name.lower() for name in spec.tables}
        self.statements: dict[str, StatementState] = {}

    def execute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        text, warehouse_id = body.get("statement"), body.get("warehouse_id")
        if not isinstance(text, str) or not text.strip():
            raise SimError(400, "statement is required.")
        warehouse = self.warehouses.get(str(warehouse_id))
        if warehouse is None:
            raise SimError(400, f"Warehouse {warehouse_id} does not exist.")
        wait = str(body.get("wait_timeout", "10s"))
        seconds = _WAIT.fullmatch(wait)
        if seconds is None or not (int(seconds.group(1)) == 0 or 5 <= int(seconds.group(1)) <= 50):
            raise SimError(400, f"wait_timeout must be 0s or between 5s and 50s, got {wait!r}.")
        if body.get("on_wait_timeout", "CONTINUE") not in ("CONTINUE", "CANCEL"):
            raise SimError(400, "on_wait_timeout must be CONTINUE or CANCEL.")
        statement = StatementState(str(uuid.uuid4()), text, warehouse)
        self.statements[statement.statement_id] = statement
        if int(seconds.group(1)) == 0 and warehouse.polls_to_finish > 0:
            statement.polls_left = warehouse.polls_to_finish
        else:
            self._finish(statement)
        return statement.as_json()

    def get(self, statement_id: str) -> dict[str, Any]:
        statement = self.statements.get(statement_id)
        if statement is None:
            raise SimError(
                404, f"Statement {statement_id} does not exist.", "RESOURCE_DOES_NOT_EXIST"
            )
        if statement.state in ("PENDING", "RUNNING"):
            if statement.polls_left > 0:
                statement.polls_left -= 1
                statement.state = "RUNNING"
            else:
                self._finish(statement)
        return statement.as_json()

    def _finish(self, statement: StatementState) -> None:
        if any(
            fnmatch.fnmatchcase(statement.text, p) for p in statement.warehouse.failing_statements
        ):
            statement.state = "FAILED"
            statement.error = {
                "error_code": "BAD_REQUEST",
                "message": "simulated statement failure",
            }
            return
        create = _CREATE.match(statement.text)
        if create is not None:
            name = create.group("name").replace("`", "").lower()
            if name in self.tables and not create.group("guard"):
                statement.state = "FAILED"
                statement.error = {
                    "error_code": "BAD_REQUEST",
                    "message": f"[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table {name}.",
                }
                return
            self.tables.add(name)
        statement.state = "SUCCEEDED"
