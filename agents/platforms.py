"""What a remediation procedure gets: the platform clients of the estate, and its contract.

A procedure takes the :class:`ActionRequest`, the :class:`Platforms` and the time, and returns
a :class:`StepReport` or raises :class:`PlatformError` (:class:`CannotRemediate` when the action
cannot help). The procedures are in :mod:`agents.procedures_adf` and
:mod:`agents.procedures_databricks`; :mod:`agents.procedures` picks one per action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streams.adapters.adf import ADFClient
from streams.adapters.databricks import DatabricksClient
from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.playbook import PlaybookClient
from streams.estate import Estate
from streams.policy.model import ActionRequest
from streams.policy.steps import Status, StepReport


class CannotRemediate(PlatformError):
    """The action cannot help here (e.g. a cluster already at its maximum size)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.BAD_REQUEST, detail)


@dataclass
class Platforms:
    estate: Estate
    adf: ADFClient | None
    databricks: DatabricksClient | None
    playbooks: PlaybookClient | None

    def need_adf(self) -> ADFClient:
        if self.adf is None:
            raise PlatformError(ErrorKind.AUTH, "no Azure AD credentials configured for ADF")
        return self.adf

    def need_databricks(self) -> DatabricksClient:
        if self.databricks is None:
            raise PlatformError(ErrorKind.AUTH, "no Databricks workspace configured")
        return self.databricks


Procedure = Callable[[ActionRequest, Platforms, int], Awaitable[StepReport]]


def adopt_status(status: Status) -> Status:
    """A fix found already begun is verified like one of ours; found already succeeded, it
    closes the chain at once (a redelivery after the chain resolved then leaves no trace)."""
    return Status.SUCCEEDED if status is Status.SUCCEEDED else Status.STARTED
