"""Names and ids an alert carries, checked against what each platform allows.

Alert content must never shape a platform call: a name taken from an alert becomes a URL path
segment or a query value only after it passed the platform's own naming rules. A name that
cannot exist on the platform (``../../providers/Microsoft.Authorization/...`` as a pipeline,
a run id that is not a GUID) is refused before any request is built, with reason
``invalid_name``; the alert still reaches people.

Rules (first failing field wins):

* ADF factory: 3-63 letters, digits and single dashes, starting and ending with a letter or
  digit (Azure Data Factory naming rules).
* ADF pipeline: at most 140 characters, starting with a letter, digit or underscore, none of
  ``. + ? / < > * % & : \\ #`` and no control characters (the same rules; ``#`` breaks ARM URLs).
* ADF run and run-group ids: GUIDs (ADF issues them).
* Databricks workspace, job and run ids: positive integers of at most 19 digits.
* Databricks cluster ids: letters, digits and dashes (``0923-164208-meows279``), at most 100.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from streams.policy.model import Alert, Source

_FACTORY = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_PIPELINE = re.compile(r"[A-Za-z0-9_][^.+?/<>*%&:\\#\x00-\x1f\x7f]*")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_NUMBER = re.compile(r"[1-9][0-9]{0,18}")
_CLUSTER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,98}[A-Za-z0-9])?")

INVALID_NAME = "invalid_name"

Check = Callable[[str], bool]


def _pattern(regex: re.Pattern[str], low: int = 1, high: int = 1000) -> Check:
    return lambda value: low <= len(value) <= high and regex.fullmatch(value) is not None


# source -> (field, what it is, rule); an empty field is not checked (the alert lacks it)
RULES: dict[str, tuple[tuple[str, str, Check], ...]] = {
    Source.ADF.value: (
        ("scope", "ADF factory name", _pattern(_FACTORY, 3, 63)),
        ("pipeline", "ADF pipeline name", _pattern(_PIPELINE, 1, 140)),
        ("run_id", "ADF pipeline run id", _pattern(_GUID)),
        ("group_id", "ADF run group id", _pattern(_GUID)),
    ),
    Source.DATABRICKS.value: (
        ("scope", "Databricks workspace id", _pattern(_NUMBER)),
        ("job_id", "Databricks job id", _pattern(_NUMBER)),
        ("run_id", "Databricks run id", _pattern(_NUMBER)),
        ("group_id", "Databricks original run id", _pattern(_NUMBER)),
        ("cluster_id", "Databricks cluster id", _pattern(_CLUSTER, 1, 100)),
    ),
}


def invalid_name(alert: Alert) -> str | None:
    """Why a name in ``alert`` cannot exist on its platform, or ``None`` when all can."""
    for field, what, allowed in RULES.get(alert.source, ()):
        value = getattr(alert, field)
        if value and not allowed(value):
            return f"{what} {_shown(value)} cannot exist"
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")
