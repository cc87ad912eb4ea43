"""Root causes the first alert does not say: run outputs, and what people get when it is theirs.

* **Run output, bounded.** A failed Databricks task often says only "Task X failed"; its real
  error is in ``jobs/runs/get-output`` (``error``, ``error_trace``). Enrichment fetches the
  output of at most :data:`MAX_TASK_OUTPUTS` failed tasks of a run and keeps a trimmed copy
  (:func:`trimmed_output`): the error's first :data:`ERROR_CHARS` characters, and of the
  trace its first :data:`TRACE_LINES` lines plus its ``Caused by:`` lines, ANSI colours
  (Python notebooks send them) removed, :data:`TRACE_CHARS` at most. The rule table then
  sub-classifies on that text (out of memory, transient, code and data errors).
* **Hand-off detail.** A failure that ends with people carries what they need in the reason
  of its classification, hence in the audit row and the notification (:func:`explained`):
  the first lines of the trace for a code or data error, the missing table (and that the
  estate has no DDL for it), the column and types of an ADF conversion failure, which is
  recorded in ``details`` too. pipemedic cannot change a pipeline's mapping, so an invalid
  data type stays manual.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from streams.policy.model import Action, Alert, Classification
from streams.policy.tables import table_name

MAX_TASK_OUTPUTS = 5
ERROR_CHARS = 1000
TRACE_LINES = 20
CAUSES_KEPT = 5
TRACE_CHARS = 2000  # what the normaliser keeps of a trace
HEAD_LINES = 3
HEAD_CHARS = 400

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def trimmed_output(output: Mapping[str, Any]) -> dict[str, str]:
    """The ``error`` and ``error_trace`` of a ``runs/get-output`` answer, bounded."""
    error = output.get("error")
    trace = output.get("error_trace")
    kept: dict[str, str] = {}
    if isinstance(error, str) and error.strip():
        kept["error"] = _ANSI.sub("", error).strip()[:ERROR_CHARS]
    if isinstance(trace, str) and trace.strip():
        lines = [line.rstrip() for line in _ANSI.sub("", trace).splitlines() if line.strip()]
        causes = [line for line in lines[TRACE_LINES:] if line.lstrip().startswith("Caused by")]
        kept["error_trace"] = "\n".join(lines[:TRACE_LINES] + causes[-CAUSES_KEPT:])[:TRACE_CHARS]
    return kept


def trace_head(message: str) -> str:
    """The first lines of an error and its trace, for people to recognise it at a glance."""
    lines = [line.strip() for line in message.splitlines() if line.strip().strip("-")]
    return " | ".join(lines[:HEAD_LINES])[:HEAD_CHARS]


# ADF's wordings of a failed conversion, first match wins; each names what it can of
# (column, source type, target type). The copy activity's TypeConversionFailure names all
# three; SQL Server's messages name no column.
_QUOTE = r"['\"]?"
_DATA_TYPE = (
    re.compile(
        rf"column name {_QUOTE}(?P<column>[^'\",]{{1,128}}){_QUOTE} from type {_QUOTE}"
        rf"(?P<source>[\w.]{{1,64}}){_QUOTE}.{{0,80}}? to type {_QUOTE}(?P<target>[\w.]{{1,64}})",
        re.IGNORECASE,
    ),
    re.compile(
        rf"column {_QUOTE}(?P<column>[^'\",]{{1,128}}){_QUOTE} contains an invalid value"
        rf".{{0,200}}?to type {_QUOTE}(?P<target>[\w.]{{1,64}})",
        re.IGNORECASE,
    ),
    re.compile(
        r"conversion failed when converting (?:the )?(?P<source>[\w]{1,64}) value .{0,200}?"
        r"to data type (?P<target>[\w]{1,64})",
        re.IGNORECASE,
    ),
    re.compile(
        r"error converting data type (?P<source>[\w]{1,64}) to (?P<target>[\w]{1,64})",
        re.IGNORECASE,
    ),
)


def data_type_detail(message: str) -> dict[str, str]:
    """``column``, ``source_type``, ``target_type`` as far as the message names them."""
    for pattern in _DATA_TYPE:
        found = pattern.search(message)
        if found is not None:
            named = found.groupdict()
            facts = {
                "column": (named.get("column") or "").strip(),
                "source_type": named.get("source") or "",
                "target_type": named.get("target") or "",
            }
            return {key: value for key, value in facts.items() if value}
    return {}


def _data_type(alert: Alert) -> tuple[dict[str, str], str]:
    facts = data_type_detail(alert.message)
    if not facts:
        return {}, "the message names no column or types"
    column = f"column {facts['column']!r}" if "column" in facts else "a column"
    types = f"{facts.get('source_type', '?')} -> {facts.get('target_type', '?')}"
    return facts, f"{column}: {types}; fix the mapping or the data (pipemedic changes no pipeline)"


def _missing_table(alert: Alert) -> tuple[dict[str, str], str]:
    name = alert.details.get("table") or table_name(alert.message)
    if not name:
        return {}, "the error names no table"
    return {"table": name}, f"table {name} is missing and the estate has no DDL for it"


def _trace(alert: Alert) -> tuple[dict[str, str], str]:
    head = trace_head(alert.message)
    return {}, f"first lines: {head}" if head else ""


# error type -> what a hand-off of it adds (facts for ``details``, text for the reason)
HANDOFF_DETAIL: Mapping[str, Callable[[Alert], tuple[dict[str, str], str]]] = {
    "UserErrorInvalidDataType": _data_type,
    "DatabricksTableNotFound": _missing_table,
    "DatabricksJobExecutionError": _trace,
    "DatabricksSparkException": _trace,
}


def explained(alert: Alert, classification: Classification) -> tuple[Alert, Classification]:
    """A manual classification with its hand-off detail added (see the module docstring);
    anything else as it is."""
    detail = HANDOFF_DETAIL.get(classification.error_type)
    if detail is None or classification.action != Action.MANUAL.value:
        return alert, classification
    facts, text = detail(alert)
    if facts:
        alert = replace(alert, details={**alert.details, **facts})
    if text:
        classification = replace(classification, reason=f"{classification.reason}; {text}")
    return alert, classification
