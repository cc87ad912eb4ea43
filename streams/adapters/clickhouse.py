"""Where the audit trail lands: ClickHouse, embedded (chDB in a folder) or a server.

Both stores speak the same SQL (``clickhouse_sql``) and the same wire format both ways:
rows go in as ``JSONEachRow`` and come back as ``JSONEachRow``, so a report returns the
same Python values whichever store ran it. Failures are translated into the adapters'
:class:`PlatformError` enum; :class:`OutcomeWriter` turns the retryable ones into
:class:`SinkBackpressure`, the signal for the caller to take no more records, wait, and
retry the same batch without committing offsets (quix-streams' ``BatchingSink`` contract;
quix pauses the partitions, our recorder in ``agents/record.py`` simply waits in its agent).

chDB allows one embedded engine per process and locks its folder: one process owns a
store folder, and a process that opened one folder must close it before opening another.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import orjson
from pydantic import SecretStr

from streams.adapters import clickhouse_schema as schema
from streams.adapters import clickhouse_sql as sql
from streams.adapters.errors import ErrorKind, PlatformError
from streams.policy.model import Outcome

# Integers as JSON numbers on every server version (older ones quote 64-bit integers).
_READ_SETTINGS = {"output_format_json_quote_64bit_integers": 0}


@dataclass(frozen=True)
class ClickHouseConfig:
    """The little a store needs. An empty ``url`` means embedded chDB in ``path``."""

    url: str = ""  # http(s)://host:port of a ClickHouse server
    path: str = ""  # folder of the embedded store
    user: str = "default"
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    database: str = "pipemedic"
    outcomes_ttl_days: int = 0  # rows (and chain summaries) go this long after; 0 = kept


class OutcomeStore(Protocol):
    database: str

    def ensure_schema(self) -> None: ...

    def insert(self, rows: Sequence[Row]) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


# --- rows ------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = 10_413_791_999_999  # 2299-12-31 23:59:59.999, the end of DateTime64's range
_UINT32_MAX = 2**32 - 1


def clickhouse_time(ms: int) -> str:
    """Epoch ms as DateTime64(3) text. Out-of-range values are clamped rather than
    rejected: one bad timestamp must not make a whole batch unwritable forever."""
    ms = min(max(int(ms), 0), _MAX_MS)
    return f"{_second_text(ms // 1000)}.{ms % 1000:03d}"


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    # rows of one batch share a handful of seconds; formatting a datetime is the slow part
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S}"


# A row to store: an Outcome, or its dict as ``Outcome.to_dict()`` gives it or Avro decodes
# it (the sink passes decoded dicts straight through: no Outcome object per row).
Row = Outcome | Mapping[str, Any]


def outcome_row(outcome: Row) -> dict[str, Any]:
    row = outcome.to_dict() if isinstance(outcome, Outcome) else dict(outcome)
    for name in sql.TIME_COLUMNS:
        # seconds with the ms as decimals: ClickHouse reads a number as a Unix time into
        # DateTime64(3) exactly, and it costs a division instead of formatting a date
        ms = row[name]
        row[name] = (ms if 0 <= ms <= _MAX_MS else min(max(int(ms), 0), _MAX_MS)) / 1000
    for name in ("attempt", "max_attempts"):
        n = row[name]
        if not 0 <= n <= _UINT32_MAX:
            row[name] = min(max(int(n), 0), _UINT32_MAX)
    cost = float(row["cost_usd"])
    row["cost_usd"] = cost if math.isfinite(cost) else 0.0
    return row


def encode_rows(rows: Sequence[Row]) -> bytes:
    """The ``JSONEachRow`` body of an insert, as one JSON array of objects (which
    ``JSONEachRow`` also reads): orjson writes the whole batch in one call."""
    return orjson.dumps([outcome_row(r) for r in rows])


def dedup_token(rows: Sequence[Row]) -> str:
    """Same transitions, same token: a re-sent batch is dropped by insert deduplication."""
    ids = sorted(r.event_id if isinstance(r, Outcome) else r["event_id"] for r in rows)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _decode(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


# --- errors ----------------------------------------------------------------------------

# ClickHouse error names (the "(NAME)" at the end of every server message) → what to do.
# Anything not listed is our mistake (syntax, types, bad data): BAD_REQUEST.
ERROR_KINDS: Mapping[str, ErrorKind] = {
    "TIMEOUT_EXCEEDED": ErrorKind.TRANSIENT,
    "SOCKET_TIMEOUT": ErrorKind.TRANSIENT,
    "NETWORK_ERROR": ErrorKind.TRANSIENT,
    "MEMORY_LIMIT_EXCEEDED": ErrorKind.TRANSIENT,
    "TABLE_IS_READ_ONLY": ErrorKind.TRANSIENT,
    "NOT_ENOUGH_SPACE": ErrorKind.TRANSIENT,
    "UNKNOWN_STATUS_OF_INSERT": ErrorKind.TRANSIENT,
    "QUERY_WAS_CANCELLED": ErrorKind.TRANSIENT,
    "ABORTED": ErrorKind.TRANSIENT,
    "KEEPER_EXCEPTION": ErrorKind.TRANSIENT,
    "ALL_CONNECTION_TRIES_FAILED": ErrorKind.TRANSIENT,
    "TOO_MANY_PARTS": ErrorKind.THROTTLED,
    "TOO_MANY_SIMULTANEOUS_QUERIES": ErrorKind.THROTTLED,
    "NO_FREE_CONNECTION": ErrorKind.THROTTLED,
    "QUOTA_EXCEEDED": ErrorKind.THROTTLED,
    "UNKNOWN_USER": ErrorKind.AUTH,
    "WRONG_PASSWORD": ErrorKind.AUTH,
    "REQUIRED_PASSWORD": ErrorKind.AUTH,
    "AUTHENTICATION_FAILED": ErrorKind.AUTH,
    "ACCESS_DENIED": ErrorKind.AUTH,
    "IP_ADDRESS_NOT_ALLOWED": ErrorKind.AUTH,
    "READONLY": ErrorKind.AUTH,
    "UNKNOWN_TABLE": ErrorKind.NOT_FOUND,
    "UNKNOWN_DATABASE": ErrorKind.NOT_FOUND,
    "NO_SUCH_COLUMN_IN_TABLE": ErrorKind.NOT_FOUND,  # table older than Outcome: migrate
}
_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


def translate_error(exc: BaseException, *, unreachable: bool = False) -> PlatformError:
    """``unreachable``: the client never got an answer (connection refused, timeout)."""
    if isinstance(exc, PlatformError):
        return exc
    message = str(exc)
    if unreachable:
        return PlatformError(ErrorKind.TRANSIENT, f"ClickHouse unreachable: {message}")
    name = getattr(exc, "name", None) or next(iter(_ERROR_NAME.findall(message)[-1:]), "")
    return PlatformError(ERROR_KINDS.get(name, ErrorKind.BAD_REQUEST), message)


# --- stores ----------------------------------------------------------------------------


class _Store(abc.ABC):
    database: str

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None: ...


class ChdbStore(_Store):
    """Embedded ClickHouse persisted to ``path`` (created if missing)."""

    def __init__(self, path: str | Path, database: str = "pipemedic", ttl_days: int = 0) -> None:
        from chdb.session import Session  # heavy: load only when the embedded store is used

        sql.quote_identifier(database)
        self.path = str(Path(path).resolve())
        self.database = database
        self.ttl_days = ttl_days
        Path(self.path).mkdir(parents=True, exist_ok=True)
        self._session: Any = Session(self.path)
        try:
            self._run("SET output_format_json_quote_64bit_integers = 0")
            self._run(sql.create_database(database))
            self._run(f"USE {sql.quote_identifier(database)}")
        except BaseException:
            self.close()
            raise

    def _run(self, statement: str, params: Mapping[str, Any] | None = None) -> bytes:
        if self._session is None:
            raise RuntimeError(f"ChdbStore({self.path}) is closed")
        try:
            result = self._session.query(statement, "JSONEachRow", params=dict(params or {}))
        except RuntimeError as exc:
            raise translate_error(exc) from exc
        return result.bytes()

    def ensure_schema(self) -> None:
        # the folder's only owner: an unpartitioned outcomes table is moved on the spot
        schema.apply(self._run, self.query, self.database, self.ttl_days, migrate=True)

    def insert(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self._session is None:
            raise RuntimeError(f"ChdbStore({self.path}) is closed")
        statement = (
            f"INSERT INTO {sql.quote_identifier(self.database)}.outcomes "
            f"({', '.join(sql.COLUMN_NAMES)}) "
            f"SETTINGS insert_deduplication_token = '{dedup_token(rows)}'"
        )
        try:
            with self._session.send_insert(statement, "JSONEachRow") as inserter:
                inserter.append(encode_rows(rows))
                inserter.finish()
        except RuntimeError as exc:
            raise translate_error(exc) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return _decode(self._run(sql, params))

    def close(self) -> None:
        session, self._session = getattr(self, "_session", None), None
        if session is not None:
            session.close()


class ServerStore(_Store):
    """A ClickHouse server over HTTP(S) via clickhouse-connect.

    ``url`` is ``http://host:8123`` or ``https://host:8443``; a user, password or database
    written in the URL takes precedence over the arguments (which are often defaults). The client is created on first use, so a
    server that is down at start-up surfaces as a retryable error, not a crash. ``client``
    injects a ready clickhouse-connect client instead (tests, custom TLS).
    """

    def __init__(
        self,
        url: str = "http://localhost:8123",
        user: str = "",
        password: SecretStr | str = "",
        database: str = "",
        *,
        client: Any = None,
        connect_timeout_s: float = 5.0,
        send_receive_timeout_s: float = 60.0,
        ttl_days: int = 0,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"ClickHouse URL must be http(s)://host:port, got {url!r}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (8443 if self.secure else 8123)
        self.user = unquote(parts.username or "") or user or "default"
        secret = password.get_secret_value() if isinstance(password, SecretStr) else password
        self._password = SecretStr(unquote(parts.password or "") or secret)
        self.database = parts.path.strip("/") or database or "pipemedic"
        sql.quote_identifier(self.database)
        self._timeouts = (connect_timeout_s, send_receive_timeout_s)
        self.ttl_days = ttl_days
        self._client = client
        if client is not None:
            client.database = self.database

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"ServerStore({scheme}://{self.user}@{self.host}:{self.port}/{self.database})"

    def _connected(self) -> Any:
        if self._client is None:
            import clickhouse_connect

            try:
                client = clickhouse_connect.get_client(
                    host=self.host,
                    port=self.port,
                    username=self.user,
                    password=self._password.get_secret_value(),
                    secure=self.secure,
                    connect_timeout=self._timeouts[0],
                    send_receive_timeout=self._timeouts[1],
                    autogenerate_session_id=False,  # sessions forbid concurrent queries
                )
            except Exception as exc:
                raise _translate_client_error(exc) from exc
            client.database = self.database  # set after: the database may not exist yet
            self._client = client
        return self._client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = self._connected()
        try:
            return getattr(client, method)(*args, **kwargs)
        except Exception as exc:
            raise _translate_client_error(exc) from exc

    def ensure_schema(self) -> None:
        # Check before creating: a user allowed to use the database may not be allowed
        # to CREATE DATABASE, even with IF NOT EXISTS.
        found = self._call(
            "raw_query",
            "SELECT count() AS n FROM system.databases WHERE name = {db:String}",
            parameters={"db": self.database},
            settings=_READ_SETTINGS,
            fmt="JSONEachRow",
            use_database=False,
        )
        if not _decode(found)[0]["n"]:
            self._call("command", sql.create_database(self.database), use_database=False)
        # several workers may write: an unpartitioned outcomes table stays as it is (README)
        schema.apply(
            lambda statement: self._call("command", statement, use_database=False),
            self.query,
            self.database,
            self.ttl_days,
        )

    def insert(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        self._call(
            "raw_insert",
            f"{sql.quote_identifier(self.database)}.outcomes",
            list(sql.COLUMN_NAMES),
            insert_block=encode_rows(rows),
            settings={"insert_deduplication_token": dedup_token(rows)},
            fmt="JSONEachRow",
        )

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        raw = self._call(
            "raw_query",
            sql,
            parameters=dict(params or {}),
            settings=_READ_SETTINGS,
            fmt="JSONEachRow",
        )
        return _decode(raw)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _translate_client_error(exc: Exception) -> PlatformError:
    from clickhouse_connect.driver.exceptions import Error, OperationalError

    if not isinstance(exc, Error) or (isinstance(exc, OperationalError) and not exc.code):
        # No answer from ClickHouse: refused, reset, timed out, or socket errors that
        # slipped past the driver.
        return translate_error(exc, unreachable=True)
    status = _HTTP_STATUS.search(str(exc))
    if exc.code is None and status:  # a proxy or load balancer answered, not ClickHouse
        kind = _HTTP_KINDS.get(int(status.group(1)), ErrorKind.BAD_REQUEST)
        if int(status.group(1)) >= 500:
            kind = ErrorKind.TRANSIENT
        return PlatformError(kind, str(exc), status=int(status.group(1)))
    return translate_error(exc)


_HTTP_STATUS = re.compile(r"HTTP status (\d{3})")
_HTTP_KINDS = {
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    429: ErrorKind.THROTTLED,
}


def open_store(config: ClickHouseConfig) -> OutcomeStore:
    if config.url:
        return ServerStore(
            config.url,
            config.user,
            config.password,
            config.database,
            ttl_days=config.outcomes_ttl_days,
        )
    if not config.path:
        raise ValueError("ClickHouseConfig needs a server url or an embedded store path")
    return ChdbStore(config.path, config.database, config.outcomes_ttl_days)


# --- reports ---------------------------------------------------------------------------


def report_by_error_type(store: OutcomeStore, since_ms: int = 0) -> list[dict[str, Any]]:
    """Per error type: alerts, duplicates, actions_executed, succeeded, failed, manual,
    self_healed, open, success_rate, cost_usd."""
    return store.query(sql.REPORT_BY_ERROR_TYPE, {"since_ms": since_ms})


def chain_summaries(store: OutcomeStore, since_ms: int = 0) -> list[dict[str, Any]]:
    """Per chain: final_state, result, resolved_by, actions_taken, attempts, error_type,
    action, time_to_resolution_ms, cost_usd, timestamps as epoch ms."""
    return store.query(sql.CHAIN_SUMMARIES, {"since_ms": since_ms})


def kpis(store: OutcomeStore, since_ms: int = 0) -> dict[str, Any]:
    """One row: success_rate, mean_time_to_resolution_ms (automated and manual),
    mean_retries, cost_usd, alerts, alerts_suppressed, alert_fatigue_reduction,
    dead_letters and the chain counts."""
    return store.query(sql.KPIS, {"since_ms": since_ms})[0]


# --- the sink --------------------------------------------------------------------------


class SinkBackpressure(Exception):
    """The store cannot take the batch now. Take no more records, keep the offsets
    uncommitted and hand the same records to :meth:`OutcomeWriter.write` again after
    ``retry_after_s``: replays collapse, so nothing counts twice."""

    def __init__(self, retry_after_s: float, cause: PlatformError) -> None:
        super().__init__(f"outcome store unavailable, retry in {retry_after_s:g}s: {cause}")
        self.retry_after_s = retry_after_s
        self.cause = cause


class OutcomeWriter:
    """Writes batches of outcomes; commit offsets only after :meth:`write` returned.

    Every failure that leaves the rows intact is backpressure, including a rejected login
    (retried slowly, until a human fixes it) and a missing table or column (the schema is
    re-applied before the retry). Only a bad request propagates, as :class:`PlatformError`:
    those rows will never be accepted, so retrying would stall the stream forever.
    """

    def __init__(
        self,
        store: OutcomeStore,
        *,
        max_rows: int = 50_000,
        retry_after_s: float = 5.0,
        auth_retry_after_s: float = 60.0,
    ) -> None:
        self.store = store
        self.max_rows = max_rows
        self.retry_after_s = retry_after_s
        self.auth_retry_after_s = auth_retry_after_s
        self._schema_ready = False

    def write(self, batch: Sequence[Row]) -> None:
        if not batch:
            return
        try:
            if not self._schema_ready:
                self.store.ensure_schema()
                self._schema_ready = True
            for start in range(0, len(batch), self.max_rows):
                self.store.insert(batch[start : start + self.max_rows])
        except PlatformError as exc:
            if exc.kind is ErrorKind.BAD_REQUEST:
                raise
            if exc.kind is ErrorKind.NOT_FOUND:
                self._schema_ready = False
            wait = self.auth_retry_after_s if exc.kind is ErrorKind.AUTH else self.retry_after_s
            raise SinkBackpressure(exc.retry_after_s or wait, exc) from exc
