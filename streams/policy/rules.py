"""Which remediation a failure gets: the rule table, the backoff schedules and ``classify``.

First match wins. A rule matches when every constraint it sets holds (an empty one is "any"):

* ``source``, ``kinds``: exact (model.Source / model.Kind values).
* ``code_source``: exact, against ``alert.details["code_source"]``; it keeps Databricks'
  vocabularies apart (``termination_reason`` code, ``cluster_event`` type, a job run's
  ``termination_details`` code, ``result_state``, ``life_cycle_state``).
* ``code`` / ``failure_type``: regex, full match on ``alert.error_code`` / ``alert.failure_type``.
* ``text``: regex, searched in ``error_code`` + ``message`` -- ADF hides the connector code
  (``ErrorCode=UserErrorSourceBlobNotExists``) and HTTP status inside 2200/2108 messages.
* ``facts``: ``{details key: regex}``, full match.

All regexes ignore case. Order: never-automate rows first (a permission error that also
says "timeout" stays manual), then specific remediations, then transient symptoms, then the
platform's own retryability hint (ADF failureType, Databricks termination type), then
Unknown, which is always manual. ``max_retries`` is ``len(schedule)`` unless a row sets it;
a manual row has neither. Overrides come from YAML (:func:`load_rules`), not code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from streams.policy.limits import AdmissionError, Cap, StormRule, parse_caps, parse_storms
from streams.policy.model import Action, Alert, Classification, Kind, Risk, Source
from streams.policy.normalize import UNMATCHED
from streams.policy.rollout import RolloutError, RolloutRow, parse_rollout

ADF, DBX = Source.ADF.value, Source.DATABRICKS.value
RUNS = (Kind.JOB_RUN.value, Kind.TASK_RUN.value)
CLUSTER = (Kind.CLUSTER.value,)
LIBRARY = (Kind.LIBRARY.value,)
RETRY, RESTART, REPAIR = Action.RETRY_PIPELINE, Action.RESTART_CLUSTER, Action.REPAIR_JOB
CREATE = Action.CREATE_TABLE
MANUAL, UPSTREAM, FALLBACK, SCALE = (
    Action.MANUAL,
    Action.UPSTREAM_CHECK,
    Action.LIBRARY_FALLBACK,
    Action.SCALE_CLUSTER,
)
LOW, MEDIUM, HIGH = Risk.LOW, Risk.MEDIUM, Risk.HIGH


def _status(codes: str) -> str:
    """An HTTP status in ADF's wording: "status code: 'ServerError (500)'", "HttpStatusCode : 429"."""
    return rf"status[^.\d\n]{{0,40}}\b(?:{codes})\b|\((?:{codes})\)|HTTP/?\d?\.?\d? (?:{codes})\b"


# Every alternative starts with a literal character: that keeps the regex engine's
# first-character prefilter, which makes a search over a long message several times
# cheaper (bench/README.md).
AUTH = (
    r"AuthenticationError|AuthenticationFailed|AuthorizationFailed|Unauthori[sz]ed|Forbidden"
    r"|token (?:has |is )?expired|invalid (?:client )?(?:secret|credential)|AADSTS\d|Login failed"
    r"|permission denied|" + _status("401|403")
)
PERMISSION = (
    r"PERMISSION_DENIED|permission denied|permissions? (?:are|is) required|does not have (?:\w+ ){0,3}"
    r"(?:permission|privilege|access)|not authori[sz]ed|Unauthori[sz]ed|Forbidden"
    r"|insufficient privileges|Access ?Denied|Invalid access token|" + _status("401|403")
)
COLUMN = (
    r"UserErrorColumnNameInvalid|ErrorCode=\w*ColumnName|Invalid column name"
    r"|column (?:name )?['\"]?[\w.]{1,128}['\"]? (?:does not exist|not found|is not found)"
)
SCHEMA = (
    r"schema mismatch|SchemaMismatch|DELTA_FAILED_TO_MERGE_FIELDS|UNRESOLVED_COLUMN|incompatible schema"
    r"|cannot resolve .{1,200} given input columns|ErrorCode=\w*Schema|column count mismatch"
)
DATA_TYPE = (
    r"UserErrorInvalidDataType|ErrorCode=TypeConversionFailure|ErrorCode=DataTypeNotSupported"
    r"|Conversion failed when converting|Error converting data type|cannot be converted to"
)
INTEGRITY = (
    r"corrupt(?:ed|ion)?\b|checksum (?:mismatch|error|failed)|data integrity|duplicate key"
    r"|Violation of (?:PRIMARY|UNIQUE) KEY constraint|FOREIGN KEY constraint|constraint violat"
    r"|DELTA_VIOLATE_CONSTRAINT|DELTA_NOT_NULL_CONSTRAINT|MALFORMED_RECORD|Malformed records"
)
TABLE_MISSING = (
    r"TABLE_OR_VIEW_NOT_FOUND|Table or view not found|NoSuchTableException|SCHEMA_NOT_FOUND"
    r"|Table ['`\"]?[\w.`]{1,200}['`\"]? (?:does not exist|not found|cannot be found)"
)
SOURCE_MISSING = (
    r"UserErrorSourceBlobNotExists|BlobNotFound|The required Blob is missing"
    r"|The specified (?:blob|path) does not exist|PathNotFound|UserErrorFileNotFound"
)
THROTTLED = (
    r"ThrottlingError|TooManyRequests|Too Many Requests|ServiceUnavailable|Service Unavailable"
    r"|throttl|rate limit|" + _status("429|503")
)
GATEWAY = r"GatewayTimeout|Gateway Time-?out|BadGateway|Bad Gateway|" + _status("502|504")
SERVER_ERROR = r"InternalServerError|Internal Server Error|" + _status("500")
CONNECTION = (
    r"HttpConnectionFailed|connection (?:was )?(?:reset|refused|closed|aborted|forcibly closed)"
    r"|could not (?:establish|open|connect)|unable to (?:establish|open|connect)"
    r"|failed to (?:establish|open|connect)|No such host|name or service not known|name resolution"
    r"|An error occurred while sending the request|No response from the endpoint|SocketException"
    r"|connect(?:ion)? timed out"
)
TIMEOUT = r"timed? ?out\b|timeout"  # also TimeoutException, "timeout expired", TIMEDOUT
LIBRARY_FAILED = (
    r"LIBRARY_INSTALLATION_ERROR|Library installation failed|Library resolution failed"
    r"|Could not find a version that satisfies|No matching distribution found|ResolutionImpossible"
)
OOM = (
    r"OutOfMemory|out of memory|GC overhead limit exceeded|exceeding memory limits|DRIVER_OUT_OF_MEMORY"
    r"|ExecutorLostFailure|Lost executor|executor lost"
)
DRIVER_DOWN = (
    r"driver (?:is )?(?:not responding|unresponsive|unreachable|unavailable)"
    r"|spark driver has stopped unexpectedly|lost connection to (?:the )?driver"
)
SPARK_TRANSIENT = (  # shuffle, network and storage hiccups: a repair reruns the task
    r"FetchFailed|Remote RPC client disassociated|RpcTimeoutException|Broken pipe"
    r"|Connection reset|Connection refused|SocketTimeoutException|UnknownHostException"
    r"|ServerBusy|Server Busy|The server is busy|Service Unavailable|ServiceUnavailable"
    r"|TEMPORARILY_UNAVAILABLE|SlowDown|, 503, |StatusCode=503|status code 503|HTTP 503"
)
# user code and data: a rerun fails the same way (run output: AnalysisException, a JVM or
# Python exception raised by the job's own code, an assertion)
CODE_ERROR = (
    r"AnalysisException|NullPointerException|AssertionError|assertion failed|requirement failed"
    r"|IllegalArgumentException|IllegalStateException|ClassCastException|NumberFormatException"
    r"|ArithmeticException|IndexOutOfBoundsException|NoSuchElementException|ParseException"
    r"|PARSE_SYNTAX_ERROR|CAST_INVALID_INPUT|DIVIDE_BY_ZERO|ARITHMETIC_OVERFLOW|PythonException"
    r"|KeyError|ValueError|TypeError|IndexError|AttributeError|NameError|ZeroDivisionError"
    r"|ModuleNotFoundError|ImportError|SyntaxError|NotImplementedError|UnboundLocalError"
)
SPARK = r"SparkException|Py4JJavaError|AnalysisException|org\.apache\.spark"
PERMISSION_CODES = (
    r"UNAUTHORIZED_ERROR|STORAGE_ACCESS_ERROR|SECRET_RESOLUTION_ERROR|ACCESS_TOKEN_FAILURE"
    r"|\w*PERMISSION_DENIED"
)
CONFIG_CODES = (
    r"INVALID_CLUSTER_REQUEST|INVALID_RUN_CONFIGURATION|RESOURCE_NOT_FOUND|FEATURE_DISABLED"
    r"|REPOSITORY_CHECKOUT_FAILED|BUDGET_POLICY_\w+|\w*INIT_SCRIPT_FAILURE|INVALID_ARGUMENT"
    r"|INVALID_SPARK_IMAGE|\w*_CONFIGURATION_FAILURE"
)
QUOTA_CODES = (
    r"\w*QUOTA_EXCEEDED\w*|\w*_THROTTLING|\w*_THROTTLED|RATE_LIMITED"
    r"|INSTANCE_POOL_MAX_CAPACITY_REACHED"
)
JOB_LIMIT_CODES = (
    r"CLUSTER_REQUEST_LIMIT_EXCEEDED|WORKSPACE_RUN_LIMIT_EXCEEDED|MAX_CONCURRENT_RUNS_EXCEEDED"
    r"|MAX_SPARK_CONTEXTS_EXCEEDED|MAX_JOB_QUEUE_SIZE_EXCEEDED|MAXIMUM_CONCURRENT_RUNS_REACHED"
)
START_CODES = (
    r"\w*LAUNCH_FAILURE|CLOUD_PROVIDER_RESOURCE_STOCKOUT|SPARK_STARTUP_FAILURE|DRIVER_LAUNCH_TIMEOUT"
    r"|BOOTSTRAP_TIMEOUT|INSTANCE_UNREACHABLE|INSTANCE_POOL_CLUSTER_FAILURE|AZURE_VM_EXTENSION_FAILURE"
    r"|SUBNET_EXHAUSTED_FAILURE|IP_EXHAUSTION_FAILURE"
)
LOST_CODES = (
    r"COMMUNICATION_LOST|SPOT_INSTANCE_TERMINATION|CLOUD_PROVIDER_SHUTDOWN|INTERNAL_ERROR"
    r"|TEMPORARILY_UNAVAILABLE|DBFS_COMPONENT_UNHEALTHY|METASTORE_COMPONENT_UNHEALTHY"
)


def _case_folded(pattern: str) -> str:
    """The pattern with its literals lower-cased and escapes (``\\b``, ``\\W``...) kept.

    Searched in a lower-cased haystack it ignores case like ``re.IGNORECASE`` does, but keeps
    the engine's literal prefilters, which IGNORECASE turns off.
    """
    parts, index = [], 0
    while index < len(pattern):
        if pattern[index] == "\\":
            parts.append(pattern[index : index + 2])
            index += 2
        else:
            parts.append(pattern[index].lower())
            index += 1
    return "".join(parts)


@dataclass(frozen=True)
class Rule:
    name: str
    error_type: str
    action: Action
    risk: Risk
    source: str = ""
    kinds: tuple[str, ...] = ()
    code_source: str = ""
    code: str = ""
    failure_type: str = ""
    text: str = ""
    facts: tuple[tuple[str, str], ...] = ()
    schedule: str = ""  # a DEFAULT_SCHEDULES key; "" means the one named like error_type
    max_retries: int | None = None
    note: str = ""
    _code: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _failure_type: re.Pattern[str] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _text: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _facts: tuple[tuple[str, re.Pattern[str]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__  # frozen: normalise enums to values, compile once
        setattr_(self, "action", Action(self.action))
        setattr_(self, "risk", Risk(self.risk))
        setattr_(self, "source", getattr(self.source, "value", self.source))
        setattr_(self, "kinds", tuple(getattr(k, "value", k) for k in self.kinds))
        setattr_(self, "facts", tuple((k, v) for k, v in dict(self.facts).items()))
        for name in ("code", "failure_type"):
            pattern = getattr(self, name)
            setattr_(self, f"_{name}", re.compile(pattern, re.IGNORECASE) if pattern else None)
        setattr_(self, "_text", re.compile(_case_folded(self.text)) if self.text else None)
        setattr_(self, "_facts", tuple((k, re.compile(v, re.IGNORECASE)) for k, v in self.facts))

    def matches(self, alert: Alert, haystack: str) -> bool:
        """``haystack``: ``error_code`` + newline + ``message``, lower-cased, built once per alert."""
        if self.source and alert.source != self.source:
            return False
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.code_source and alert.details.get("code_source", "") != self.code_source:
            return False
        if self._code is not None and self._code.fullmatch(alert.error_code) is None:
            return False
        if (
            self._failure_type is not None
            and self._failure_type.fullmatch(alert.failure_type) is None
        ):
            return False
        for key, pattern in self._facts:
            if pattern.fullmatch(alert.details.get(key, "")) is None:
                return False
        return self._text is None or self._text.search(haystack) is not None

    def describe(self, limit: int = 0) -> str:
        """The constraints as ``key=value`` pairs; with ``limit``, long regexes are cut short."""
        parts = [
            ("source", self.source),
            ("kind", "|".join(self.kinds)),
            ("code_source", self.code_source),
            ("code", self.code),
            ("failure_type", self.failure_type),
            ("text", self.text),
        ]
        parts += [(f"details.{k}", v) for k, v in self.facts]
        cut = (lambda v: v if len(v) <= limit else v[: limit - 1] + "…") if limit else str
        return " ".join(f"{k}={cut(v)}" for k, v in parts if v) or "always"


R = Rule
# fmt: off
DEFAULT_RULES: tuple[Rule, ...] = (
    R("unmatched", "Unmatched", MANUAL, MEDIUM, code_source=UNMATCHED, code=UNMATCHED, note="the alert fired, but no failed run was found in its window: a person should look"),
    R("adf-trigger-failed", "TriggerRunFailed", MANUAL, MEDIUM, source=ADF, kinds=(Kind.TRIGGER_RUN,), note="a trigger that failed started no run: there is nothing to rerun; people look at the trigger"),
    # -- never automated: credentials, permissions, configuration, schema, data integrity
    R("adf-token-expired", "AuthenticationError", MANUAL, MEDIUM, source=ADF, code="3200", note="the Databricks access token of the ADF linked service expired: rotate it there; never retried"),
    R("adf-credential-invalid", "AuthenticationError", MANUAL, MEDIUM, source=ADF, code="412[12]", note="the Azure ML linked-service credential expired or is invalid: rotate it there; never retried"),
    R("adf-auth", "AuthenticationError", MANUAL, MEDIUM, source=ADF, text=AUTH, note="authentication failures are never automated"),
    R("dbx-permission-code", "DatabricksPermissionDenied", MANUAL, HIGH, source=DBX, code=PERMISSION_CODES, note="needs an access grant"),
    R("dbx-permission", "DatabricksPermissionDenied", MANUAL, HIGH, source=DBX, text=PERMISSION, note="needs an access grant"),
    R("dbx-misconfig", "DatabricksClusterStartFailure", MANUAL, HIGH, source=DBX, code=r"\w+_DUE_TO_MISCONFIG", note="misconfiguration: a restart cannot help"),
    R("adf-authoring", "ConfigurationError", MANUAL, HIGH, source=ADF, code="210[3-6]|2111|3201", note="fix the pipeline or linked service definition"),
    R("dbx-configuration", "ConfigurationError", MANUAL, HIGH, source=DBX, code=CONFIG_CODES, note="fix the job or cluster configuration"),
    R("adf-column", "UserErrorColumnNameInvalid", MANUAL, HIGH, source=ADF, text=COLUMN, note="needs a schema change"),
    R("schema-mismatch", "SchemaMismatchError", MANUAL, HIGH, text=SCHEMA, note="schema changes are never automated"),
    R("adf-data-type", "UserErrorInvalidDataType", MANUAL, MEDIUM, source=ADF, text=DATA_TYPE, note="auto-cast would change the pipeline, which pipemedic never does: column and types go to people"),
    R("data-integrity", "DataIntegrityError", MANUAL, HIGH, text=INTEGRITY, note="data integrity fixes are never automated"),
    R("dbx-table-create", "DatabricksTableNotFound", CREATE, MEDIUM, source=DBX, kinds=RUNS, text=TABLE_MISSING, facts={"table_ddl": "estate"}, note="the estate's DDL creates it (with approval), then the run is repaired"),
    R("dbx-table-missing", "DatabricksTableNotFound", MANUAL, MEDIUM, source=DBX, text=TABLE_MISSING, note="no DDL for this table in the estate: create it, then repair the run"),
    # -- specific remediations
    R("adf-source-missing", "UserErrorSourceBlobNotExists", UPSTREAM, LOW, source=ADF, text=SOURCE_MISSING),
    R("dbx-library-cluster", "LibraryInstallFailed", FALLBACK, LOW, source=DBX, kinds=LIBRARY),
    R("dbx-library-run", "DatabricksLibraryInstallationError", FALLBACK, LOW, source=DBX, kinds=RUNS, text=LIBRARY_FAILED),
    R("dbx-out-of-memory", "DatabricksResourceExhausted", SCALE, MEDIUM, source=DBX, text=OOM, note="scaled within its autoscale limits; a failed run is then repaired"),
    R("dbx-code-error", "DatabricksJobExecutionError", MANUAL, MEDIUM, source=DBX, kinds=RUNS, text=CODE_ERROR, note="the job's code or data failed: a rerun fails the same way"),
    R("dbx-quota-cluster", "ThrottlingError", RESTART, LOW, source=DBX, kinds=CLUSTER, code=QUOTA_CODES),
    R("dbx-quota-run", "ThrottlingError", REPAIR, LOW, source=DBX, kinds=RUNS, code=JOB_LIMIT_CODES),
    R("dbx-driver-event", "DatabricksDriverNotResponding", RESTART, LOW, source=DBX, kinds=CLUSTER, code_source="cluster_event", code="DRIVER_NOT_RESPONDING|DRIVER_UNAVAILABLE"),
    R("dbx-driver-terminated", "DatabricksDriverNotResponding", RESTART, LOW, source=DBX, kinds=CLUSTER, code_source="termination_reason", code="DRIVER_UNREACHABLE|DRIVER_UNRESPONSIVE"),
    R("dbx-driver-message", "DatabricksDriverNotResponding", RESTART, LOW, source=DBX, kinds=CLUSTER, text=DRIVER_DOWN),
    R("dbx-driver-run", "DatabricksDriverNotResponding", REPAIR, LOW, source=DBX, kinds=RUNS, text="DRIVER_ERROR|" + DRIVER_DOWN),
    R("dbx-start-failure", "DatabricksClusterStartFailure", RESTART, LOW, source=DBX, kinds=CLUSTER, code=START_CODES),
    R("dbx-cluster-lost", "ClusterUnexpectedTermination", RESTART, LOW, source=DBX, kinds=CLUSTER, code=LOST_CODES),
    R("dbx-timeout", "DatabricksTimeoutError", REPAIR, LOW, source=DBX, kinds=RUNS, text=TIMEOUT),
    R("dbx-spark-transient", "DatabricksSparkException", REPAIR, MEDIUM, source=DBX, kinds=RUNS, text=SPARK_TRANSIENT),
    R("dbx-spark", "DatabricksSparkException", MANUAL, MEDIUM, source=DBX, kinds=RUNS, text=SPARK, note="depends on the exception"),
    # -- Databricks' own retryability hint
    R("dbx-run-platform", "DatabricksJobExecutionError", REPAIR, MEDIUM, source=DBX, kinds=RUNS, code="CLOUD_FAILURE|CLUSTER_ERROR|INTERNAL_ERROR"),
    R("dbx-run-platform-type", "DatabricksJobExecutionError", REPAIR, MEDIUM, source=DBX, kinds=RUNS, failure_type="INTERNAL_ERROR|CLOUD_FAILURE"),
    R("dbx-run-user", "DatabricksJobExecutionError", MANUAL, MEDIUM, source=DBX, kinds=RUNS, code="RUN_EXECUTION_ERROR|FAILED", note="user code failed: depends on root cause"),
    R("dbx-run-client", "DatabricksJobExecutionError", MANUAL, MEDIUM, source=DBX, kinds=RUNS, failure_type="CLIENT_ERROR", note="user input or job configuration"),
    R("dbx-cluster-platform", "ClusterUnexpectedTermination", RESTART, LOW, source=DBX, kinds=CLUSTER, failure_type="CLOUD_FAILURE|SERVICE_FAULT"),
    R("dbx-cluster-client", "ConfigurationError", MANUAL, HIGH, source=DBX, kinds=CLUSTER, failure_type="CLIENT_ERROR", note="cluster terminated by a client error"),
    # -- ADF transient failures: codes, then HTTP symptoms in the message
    R("adf-throttled", "ThrottlingError", RETRY, LOW, source=ADF, code="3202"),
    R("adf-cluster-terminated", "ClusterUnexpectedTermination", RESTART, LOW, source=ADF, code="3203", note="start the Databricks cluster, then rerun"),
    R("adf-databricks-network", "HttpConnectionFailed", RETRY, LOW, source=ADF, code="3208"),
    R("adf-no-response", "HttpConnectionFailed", RETRY, LOW, source=ADF, code="2128"),
    R("http-throttled", "ThrottlingError", RETRY, LOW, source=ADF, text=THROTTLED),
    R("http-gateway", "GatewayTimeout", RETRY, LOW, source=ADF, text=GATEWAY),
    R("http-server-error", "InternalServerError", RETRY, LOW, source=ADF, text=SERVER_ERROR),
    R("http-connection", "HttpConnectionFailed", RETRY, LOW, source=ADF, text=CONNECTION),
    R("adf-timeout", "GatewayTimeout", RETRY, LOW, source=ADF, text=TIMEOUT),
    R("adf-transient-codes", "InternalServerError", RETRY, LOW, source=ADF, code="4125|206|2303"),
    R("adf-databricks-job", "DatabricksJobExecutionError", MANUAL, MEDIUM, source=ADF, code="3204", note="read the Databricks run output"),
    R("adf-system-error", "InternalServerError", RETRY, MEDIUM, source=ADF, failure_type="SystemError", note="ADF reports a platform-side failure"),
    R("unknown", "Unknown", MANUAL, HIGH, note="no rule matched: never retried"),
)
# fmt: on
UNKNOWN_RULE = DEFAULT_RULES[-1]

DEFAULT_SCHEDULES: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        # from the remediation matrix
        "GatewayTimeout": (10, 30, 60),
        "HttpConnectionFailed": (5, 15, 30),
        "ThrottlingError": (30, 60, 120, 300, 600),
        "InternalServerError": (30, 60),
        "DatabricksClusterStartFailure": (60, 120),
        "DatabricksTimeoutError": (30, 60),
        "DatabricksDriverNotResponding": (60,),
        # chosen here; every delay reuses one of the tiers above (one Kafka topic per tier)
        "UserErrorSourceBlobNotExists": (120, 300, 600),
        "ClusterUnexpectedTermination": (60, 120),
        "DatabricksLibraryInstallationError": (60,),
        "LibraryInstallFailed": (60,),
        "DatabricksResourceExhausted": (60,),
        "DatabricksJobExecutionError": (60, 300),
        "DatabricksSparkException": (60, 300),
        "DatabricksTableNotFound": (5,),  # approval comes first anyway
    }
)


def _classification(rule: Rule, schedules: Mapping[str, Sequence[int]]) -> Classification:
    reason = f"rule:{rule.name}" + (f" ({rule.note})" if rule.note else "")
    if rule.action is Action.MANUAL:
        return Classification(rule.error_type, rule.risk.value, rule.action.value, 0, (), reason)
    backoff = tuple(schedules.get(rule.schedule or rule.error_type, ()))
    retries = len(backoff) if rule.max_retries is None else rule.max_retries
    return Classification(
        rule.error_type, rule.risk.value, rule.action.value, retries, backoff, reason
    )


def classify(
    alert: Alert,
    table: Sequence[Rule] = DEFAULT_RULES,
    schedules: Mapping[str, Sequence[int]] = DEFAULT_SCHEDULES,
) -> Classification:
    """The first rule that matches; Unknown (manual, never a retry) when none does."""
    haystack = (
        f"{alert.error_code}\n{alert.message}" if alert.error_code else alert.message
    ).lower()
    for rule in table:
        if rule.matches(alert, haystack):
            return _classification(rule, schedules)
    return _classification(UNKNOWN_RULE, schedules)


class Classifier:
    """:func:`classify` with a given table and schedules, remembering recent answers.

    Classification is a pure function of a few alert facts, and production repeats them:
    the same pipeline fails with the same message run after run. The memo is keyed by
    exactly the facts the rules read, so a hit is the answer the table would give; it holds
    at most ``memo_size`` answers and starts over when full (no eviction bookkeeping).
    """

    def __init__(
        self,
        table: Sequence[Rule] = DEFAULT_RULES,
        schedules: Mapping[str, Sequence[int]] = DEFAULT_SCHEDULES,
        memo_size: int = 4096,
    ) -> None:
        self.table = tuple(table)
        self.schedules = schedules
        self.memo_size = memo_size
        self._memo: dict[tuple[Any, ...], Classification] = {}
        # the detail keys any rule reads: they are part of the memo key
        self._detail_keys = tuple(
            sorted({"code_source"} | {key for rule in self.table for key, _ in rule.facts})
        )

    def __call__(self, alert: Alert) -> Classification:
        details = alert.details
        key = (
            alert.source,
            alert.kind,
            alert.error_code,
            alert.failure_type,
            alert.message,
            *(details.get(k, "") for k in self._detail_keys),
        )
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= self.memo_size:
                self._memo.clear()
            found = self._memo[key] = classify(alert, self.table, self.schedules)
        return found


def rules_table_rows(
    rules: Sequence[Rule] = DEFAULT_RULES,
    schedules: Mapping[str, Sequence[int]] = DEFAULT_SCHEDULES,
) -> list[dict[str, Any]]:
    """One flat row per rule, in match order, for ``pipemedic rules``."""
    rows = []
    for rule in rules:
        result = _classification(rule, schedules)
        rows.append(
            {
                "rule": rule.name,
                "when": rule.describe(limit=40),
                "error_type": result.error_type,
                "action": result.action,
                "risk": result.risk,
                "schedule": (rule.schedule or rule.error_type) if result.backoff_s else "",
                "backoff_s": "/".join(str(s) for s in result.backoff_s),
                "max_retries": result.max_retries,
                "note": rule.note,
            }
        )
    return rows


# ---------------------------------------------------------------- YAML overrides


class RulesError(ValueError):
    """The override file is invalid; the message lists every problem found."""


_RULE_KEYS = frozenset(
    {
        "name",
        "error_type",
        "action",
        "risk",
        "schedule",
        "max_retries",
        "note",
        "match",
        "position",
        "disabled",
    }
)
_MATCH_KEYS = frozenset({"source", "kinds", "code_source", "code", "failure_type", "text", "facts"})
_MAX_DELAY_S = 24 * 3600


def load_rules(
    path: str | Path,
    *,
    rules: Sequence[Rule] = DEFAULT_RULES,
    schedules: Mapping[str, Sequence[int]] = DEFAULT_SCHEDULES,
) -> tuple[tuple[Rule, ...], Mapping[str, tuple[int, ...]]]:
    """The default table and schedules with the overrides of a YAML file applied.

    ``schedules: {Name: [seconds, ...]}`` adds or replaces schedules. Each ``rules:`` entry
    with the ``name`` of an existing row changes that row in place (only the keys given;
    ``match`` keys replace those constraints); ``disabled: true`` removes it. A new name adds
    a row before all defaults (``position: first``, the default) or just before the Unknown
    catch-all (``position: last``); a new row needs ``error_type``, ``action``, ``risk`` and
    a non-empty ``match``. Every row that acts needs a schedule; Unknown stays manual.
    """
    return parse_rules(_read(path), rules=rules, schedules=schedules, origin=str(path))


def _read(path: str | Path) -> Any:
    """A rules file as parsed YAML; unreadable or not YAML is a :class:`RulesError`."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from None


# what a rules file may hold: the rule table and schedules, the rollout table, the admission
# tables (streams/policy/admission.py)
_FILE_KEYS = frozenset({"rules", "schedules", "rollout", "caps", "storms"})


def load_limits(path: str | Path | None) -> tuple[tuple[Cap, ...], tuple[StormRule, ...]]:
    """The ``caps:`` and ``storms:`` tables of a rules file; none without a file."""
    if path is None:
        return (), ()
    doc = _read(path) or {}
    try:
        return (
            parse_caps(doc.get("caps"), origin=f"{path}: caps"),
            parse_storms(doc.get("storms"), origin=f"{path}: storms"),
        )
    except AdmissionError as exc:
        raise RulesError(str(exc)) from None


def load_rollout(path: str | Path | None) -> tuple[RolloutRow, ...]:
    """The ``rollout:`` table of a rules file (:mod:`streams.policy.rollout`); none without
    a file."""
    if path is None:
        return ()
    doc = _read(path)
    try:
        return parse_rollout((doc or {}).get("rollout"), origin=str(path))
    except RolloutError as exc:
        raise RulesError(str(exc)) from None


def parse_rules(
    doc: Any,
    *,
    rules: Sequence[Rule] = DEFAULT_RULES,
    schedules: Mapping[str, Sequence[int]] = DEFAULT_SCHEDULES,
    origin: str = "rules",
) -> tuple[tuple[Rule, ...], Mapping[str, tuple[int, ...]]]:
    """:func:`load_rules` on an already parsed document."""
    doc = {} if doc is None else doc
    if not isinstance(doc, Mapping) or set(doc) - _FILE_KEYS:
        raise RulesError(
            f"{origin}: expected a mapping with only {', '.join(map(repr, sorted(_FILE_KEYS)))}"
            " keys"
        )
    errors: list[str] = []
    merged = {name: tuple(delays) for name, delays in schedules.items()}
    new_schedules = doc.get("schedules") or {}
    if not isinstance(new_schedules, Mapping):
        errors.append(f"{origin}: schedules: expected a mapping of name -> [seconds, ...]")
        new_schedules = {}
    for name, delays in new_schedules.items():
        if (
            not isinstance(delays, list)
            or not delays
            or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 < d <= _MAX_DELAY_S
                for d in delays
            )
        ):
            errors.append(
                f"{origin}: schedules.{name}: expected a non-empty list of seconds (1..{_MAX_DELAY_S})"
            )
        else:
            merged[str(name)] = tuple(delays)
    table = list(rules)
    entries = doc.get("rules") or []
    if not isinstance(entries, list):
        errors.append(f"{origin}: rules: expected a list")
        entries = []
    first = 0
    for index, entry in enumerate(entries):
        where = f"{origin}: rules[{index}]"
        try:
            first = _apply(entry, table, first)
        except (ValueError, TypeError, re.error) as exc:
            errors.append(f"{where}: {exc}")
    for rule in table:
        needs = rule.schedule or rule.error_type
        if rule.action is not Action.MANUAL and not merged.get(needs):
            errors.append(
                f"{origin}: rule {rule.name}: action {rule.action.value} needs schedule {needs!r}"
            )
        if rule.error_type == "Unknown" and rule.action is not Action.MANUAL:
            errors.append(f"{origin}: rule {rule.name}: Unknown must stay manual")
    if errors:
        raise RulesError("\n".join(errors))
    return tuple(table), MappingProxyType(merged)


def _apply(entry: Any, table: list[Rule], first: int) -> int:
    """Apply one override entry to ``table``; returns the next insert position for new rows."""
    if not isinstance(entry, Mapping):
        raise ValueError("expected a mapping")
    unknown = set(entry) - _RULE_KEYS
    match = entry.get("match") or {}
    if not isinstance(match, Mapping):
        raise ValueError("match: expected a mapping")
    unknown |= {f"match.{k}" for k in set(match) - _MATCH_KEYS}
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("name: required string")
    existing = next((i for i, rule in enumerate(table) if rule.name == name), None)
    if entry.get("disabled"):
        if existing is None:
            raise ValueError(f"disabled: no rule named {name!r}")
        del table[existing]
        return min(first, len(table))
    changes = {
        k: entry[k]
        for k in ("error_type", "action", "risk", "schedule", "max_retries", "note")
        if k in entry
    }
    changes.update(_match_fields(match))
    if "max_retries" in changes and (
        not isinstance(changes["max_retries"], int) or not 0 <= changes["max_retries"] <= 20
    ):
        raise ValueError("max_retries: expected an integer 0..20")
    for key in ("action", "risk"):
        if key in changes:
            enum = Action if key == "action" else Risk
            if changes[key] not in {e.value for e in enum}:
                raise ValueError(
                    f"{key}: {changes[key]!r} is not one of {', '.join(e.value for e in enum)}"
                )
    if existing is not None:
        table[existing] = dataclasses.replace(table[existing], **changes)
        return first
    missing = [k for k in ("error_type", "action", "risk") if k not in changes]
    if missing:
        raise ValueError(f"new rule {name!r} needs {', '.join(missing)}")
    if not any(_match_fields(match).values()):
        raise ValueError(
            f"new rule {name!r} needs a non-empty match (a row without one matches everything)"
        )
    rule = Rule(name=name, **changes)
    position = entry.get("position", "first")
    if position == "first":
        table.insert(first, rule)
        return first + 1
    if position == "last":
        catch_all = len(table) - 1 if table and table[-1].describe() == "always" else len(table)
        table.insert(catch_all, rule)
        return first
    raise ValueError("position: expected 'first' or 'last'")


def _match_fields(match: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in match.items():
        if key == "kinds":
            kinds = [value] if isinstance(value, str) else value
            if not isinstance(kinds, list) or not all(k in {e.value for e in Kind} for k in kinds):
                raise ValueError(
                    f"match.kinds: expected kinds among {', '.join(e.value for e in Kind)}"
                )
            fields["kinds"] = tuple(kinds)
        elif key == "facts":
            if not isinstance(value, Mapping) or not all(
                isinstance(v, str) for v in value.values()
            ):
                raise ValueError("match.facts: expected a mapping of details key -> regex")
            fields["facts"] = tuple((str(k), v) for k, v in value.items())
        elif key == "source" and value not in ("", *(e.value for e in Source)):
            raise ValueError(f"match.source: expected one of {', '.join(e.value for e in Source)}")
        elif not isinstance(value, str):
            raise ValueError(f"match.{key}: expected a string")
        else:
            if key in ("code", "failure_type", "text"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"match.{key}: bad regex: {exc}") from None
            fields[key] = value
    return fields  # an empty value clears that constraint of an existing row
