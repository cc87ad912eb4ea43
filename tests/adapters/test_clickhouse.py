"""The ClickHouse outcome store, run on every backend we can reach.

Each body runs against
* ``chdb``: :class:`ChdbStore`, embedded chDB in a tmp folder;
* ``connect-on-chdb``: :class:`ServerStore` driving a clickhouse-connect client whose
  transport is chDB (clickhouse-connect's ``chdb`` interface). Not a server, but it runs
  the server store's own code: parameter binding, ``raw_insert``, ``command``, errors;
* ``server``: :class:`ServerStore` on a real ClickHouse server when
  ``PIPEMEDIC_TEST_CLICKHOUSE_URL`` names one (e.g. ``http://user:pass@localhost:8123``);
  each test gets its own database, dropped afterwards.

chDB runs one engine per process: every store a test opens is closed in teardown.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from streams.adapters import clickhouse_sql as sql
from streams.adapters.clickhouse import (
    ChdbStore,
    ClickHouseConfig,
    OutcomeStore,
    OutcomeWriter,
    ServerStore,
    SinkBackpressure,
    chain_summaries,
    clickhouse_time,
    kpis,
    open_store,
    report_by_error_type,
)
from streams.adapters.errors import ErrorKind, PlatformError
from streams.policy.model import Outcome

SERVER_URL = os.environ.get("PIPEMEDIC_TEST_CLICKHOUSE_URL", "")


@dataclass
class Target:
    """One backend; ``open()`` gives a fresh store on the same data (for reopen tests)."""

    name: str
    opener: Callable[[], OutcomeStore]
    opened: list[OutcomeStore] = field(default_factory=list)

    def open(self) -> OutcomeStore:
        store = self.opener()
        self.opened.append(store)
        return store


def _connect_on_chdb(path: Path) -> ServerStore:
    import clickhouse_connect

    client = clickhouse_connect.get_client(interface="chdb", dsn=f"chdb://{path}")
    return ServerStore("http://chdb-transport:8123", database="pipemedic", client=client)


@pytest.fixture(
    params=[
        "chdb",
        "connect-on-chdb",
        pytest.param(
            "server",
            marks=pytest.mark.skipif(
                not SERVER_URL,
                reason="no ClickHouse server: set PIPEMEDIC_TEST_CLICKHOUSE_URL to run these",
            ),
        ),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    database = f"pipemedic_test_{uuid.uuid4().hex[:10]}"
    if request.param == "chdb":
        t = Target("chdb", lambda: ChdbStore(tmp_path / "chdb"))
    elif request.param == "connect-on-chdb":
        t = Target("connect-on-chdb", lambda: _connect_on_chdb(tmp_path / "chdb"))
    else:
        t = Target("server", lambda: ServerStore(SERVER_URL, database=database))
    yield t
    for store in t.opened:
        store.close()
    if request.param == "server":
        import clickhouse_connect

        store = ServerStore(SERVER_URL, database=database)
        client = clickhouse_connect.get_client(
            host=store.host,
            port=store.port,
            username=store.user,
            password=store._password.get_secret_value(),
            secure=store.secure,
        )
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


@pytest.fixture
def store(target: Target) -> OutcomeStore:
    s = target.open()
    s.ensure_schema()
    return s


# --- a crafted audit trail -------------------------------------------------------------


def row(event_id: str, at: int, chain: str, state: str, **kw) -> Outcome:
    return Outcome(
        event_id=event_id, at=at, chain_id=chain, dedup_key=f"k-{chain}", state=state, **kw
    )


GT = {"error_type": "GatewayTimeout", "action": "retry_pipeline", "source": "adf"}

# fmt: off
TRAIL: tuple[Outcome, ...] = (
    # A: retried twice, fixed by pipemedic. One duplicate alert.
    row("a1", 1_000, "A", "received", alert_id="a-1", first_seen_at=1_000, **GT),
    row("a2", 1_500, "A", "duplicate", alert_id="a-2", first_seen_at=1_000, **GT),
    row("a3", 2_000, "A", "scheduled", attempt=1, first_seen_at=1_000, due_at=2_500, **GT),
    row("a4", 3_000, "A", "executed", attempt=1, cost_usd=0.1, first_seen_at=1_000, **GT),
    row("a5", 4_000, "A", "failed", attempt=1, first_seen_at=1_000, **GT),
    row("a6", 5_000, "A", "scheduled", attempt=2, first_seen_at=1_000, **GT),
    row("a7", 6_000, "A", "executed", attempt=2, cost_usd=0.1, first_seen_at=1_000, **GT),
    row("a8", 10_000, "A", "resolved", attempt=2, first_seen_at=1_000, **GT),
    # B: three tries, gave up; a human fixed it later (manual time to resolution).
    row("b1", 2_000, "B", "received", alert_id="b-1", first_seen_at=2_000, **GT),
    row("b2", 3_000, "B", "executed", attempt=1, cost_usd=0.1, first_seen_at=2_000, **GT),
    row("b3", 4_000, "B", "executed", attempt=2, cost_usd=0.1, first_seen_at=2_000, **GT),
    row("b4", 5_000, "B", "executed", attempt=3, cost_usd=0.1, first_seen_at=2_000, **GT),
    row("b5", 20_000, "B", "gave_up", attempt=3, first_seen_at=2_000, **GT),
    row("b6", 62_000, "B", "resolved", attempt=3, first_seen_at=2_000, **GT),
    # C: never automated.
    row("c1", 3_000, "C", "received", alert_id="c-1", error_type="UserErrorColumnNameInvalid"),
    row("c2", 3_100, "C", "manual", error_type="UserErrorColumnNameInvalid", action="manual"),
    # D: cluster restart; two duplicates; "resolved" in the same ms as "executed".
    row("d1", 4_000, "D", "received", alert_id="d-1", first_seen_at=4_000, source="databricks"),
    row("d2", 4_100, "D", "duplicate", alert_id="d-2", first_seen_at=4_000),
    row("d3", 4_200, "D", "duplicate", alert_id="d-3", first_seen_at=4_000),
    row("d4", 5_000, "D", "resolved", attempt=1, first_seen_at=4_000,
        error_type="DatabricksClusterStartFailure", action="restart_cluster"),
    row("d5", 5_000, "D", "executed", attempt=1, cost_usd=1.5, first_seen_at=4_000,
        error_type="DatabricksClusterStartFailure", action="restart_cluster"),
    # E: the platform retried by itself.
    row("e1", 6_000, "E", "received", alert_id="e-1", error_type="ThrottlingError"),
    row("e2", 6_100, "E", "waiting", error_type="ThrottlingError"),
    row("e3", 30_000, "E", "resolved", error_type="ThrottlingError"),
    # F: still in flight.
    row("f1", 7_000, "F", "received", alert_id="f-1", **GT),
    row("f2", 7_100, "F", "scheduled", attempt=1, **GT),
    # A dead letter: no chain.
    row("x1", 8_000, "", "dead_letter", detail="not_json: Expecting value"),
)
# fmt: on


def by_key(rows: list[dict], key: str) -> dict[str, dict]:
    return {r[key]: r for r in rows}


# --- store -----------------------------------------------------------------------------


def test_insert_round_trips_every_field(store: OutcomeStore) -> None:
    original = Outcome(
        event_id="ev-1",
        at=1_700_000_000_123,
        chain_id="ch-1",
        dedup_key="adf|f|run-1",
        state="executed",
        source="adf",
        scope="adf-prod",
        pipeline="Copy_From_Bronze",
        run_id="run-1",
        alert_id="al-1",
        error_type="GatewayTimeout",
        risk="low",
        action="retry_pipeline",
        attempt=2,
        max_attempts=3,
        due_at=1_700_000_030_000,
        first_seen_at=1_699_999_999_001,
        new_run_id="run-2",
        platform_status="Queued",
        cost_usd=0.25,
        detail='it\'s "quoted", back\\slash,\nnewline, ünïcode, {braces}',
    )
    store.insert([original])
    times = ", ".join(f"toUnixTimestamp64Milli({c}) AS {c}" for c in sorted(sql.TIME_COLUMNS))
    others = ", ".join(n for n in sql.COLUMN_NAMES if n not in sql.TIME_COLUMNS)
    [got] = store.query(f"SELECT {others}, {times} FROM outcomes FINAL")
    assert Outcome.from_dict(got) == original


def test_query_binds_parameters_server_side(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    rows = store.query(
        "SELECT event_id FROM outcomes FINAL WHERE chain_id = {c:String} AND at >= {t:Int64}"
        " ORDER BY event_id",
        {"c": "A' OR '1'='1", "t": 0},
    )
    assert rows == []
    rows = store.query(
        "SELECT count() AS n FROM outcomes FINAL WHERE chain_id = {c:String}", {"c": "A"}
    )
    assert rows == [{"n": 8}]


def test_identical_batch_twice_is_deduplicated_on_insert(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    store.insert(TRAIL)
    # Without FINAL: the second insert never landed.
    assert store.query("SELECT count() AS n FROM outcomes") == [{"n": len(TRAIL)}]


def test_replay_in_other_batches_counts_once_in_every_report(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    expected = (report_by_error_type(store), chain_summaries(store), kpis(store))
    replay = list(reversed(TRAIL))
    for start in range(0, len(replay), 4):  # new batch shapes: insert dedup cannot help
        store.insert(replay[start : start + 4])
    physical = store.query("SELECT count() AS n FROM outcomes")[0]["n"]
    assert physical >= len(TRAIL)
    assert store.query("SELECT count() AS n FROM outcomes FINAL") == [{"n": len(TRAIL)}]
    assert (report_by_error_type(store), chain_summaries(store), kpis(store)) == expected


def test_report_by_error_type(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    report = by_key(report_by_error_type(store), "error_type")
    assert set(report) == {
        "GatewayTimeout",
        "UserErrorColumnNameInvalid",
        "DatabricksClusterStartFailure",
        "ThrottlingError",
        "(unclassified)",
    }
    gt = report["GatewayTimeout"]
    assert {k: v for k, v in gt.items() if k != "cost_usd"} == {
        "error_type": "GatewayTimeout",
        "alerts": 4,
        "duplicates": 1,
        "actions_executed": 5,
        "succeeded": 1,
        "failed": 1,
        "manual": 0,
        "self_healed": 0,
        "open": 1,
        "success_rate": 0.5,
    }
    assert gt["cost_usd"] == pytest.approx(0.5)
    # D's received and duplicate rows carry no error type: the chain's decides.
    dbx = report["DatabricksClusterStartFailure"]
    assert (dbx["alerts"], dbx["duplicates"], dbx["actions_executed"]) == (3, 2, 1)
    assert (dbx["succeeded"], dbx["success_rate"]) == (1, 1)
    assert report["UserErrorColumnNameInvalid"]["manual"] == 1
    assert report["UserErrorColumnNameInvalid"]["success_rate"] is None
    assert report["ThrottlingError"]["self_healed"] == 1
    assert report["(unclassified)"]["alerts"] == 0  # the dead letter


def test_chain_summaries(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    chains = by_key(chain_summaries(store), "chain_id")
    assert list(chains) == ["A", "B", "C", "D", "E", "F"]  # by opened_at; no dead letter

    def view(c: dict) -> tuple:
        return (
            c["final_state"],
            c["result"],
            c["resolved_by"],
            c["actions_taken"],
            c["attempts"],
            c["error_type"],
            c["time_to_resolution_ms"],
        )

    assert view(chains["A"]) == (
        "resolved",
        "remediated",
        "pipemedic",
        2,
        2,
        "GatewayTimeout",
        9_000,
    )
    assert view(chains["B"]) == ("resolved", "gave_up", "people", 3, 3, "GatewayTimeout", 60_000)
    # what was done, in the order it was done
    assert chains["A"]["executed_actions"] == "retry_pipeline,retry_pipeline"
    assert chains["C"]["executed_actions"] == ""
    assert view(chains["C"]) == ("manual", "manual", "", 0, 0, "UserErrorColumnNameInvalid", None)
    assert view(chains["D"]) == (
        "resolved",
        "remediated",
        "pipemedic",
        1,
        1,
        "DatabricksClusterStartFailure",
        1_000,
    )
    assert view(chains["E"]) == (
        "resolved",
        "self_healed",
        "platform",
        0,
        0,
        "ThrottlingError",
        24_000,
    )
    assert view(chains["F"]) == ("scheduled", "open", "", 0, 1, "GatewayTimeout", None)
    a = chains["A"]
    assert (a["action"], a["source"], a["duplicates"], a["opened_at"], a["resolved_at"]) == (
        "retry_pipeline",
        "adf",
        1,
        1_000,
        10_000,
    )
    assert a["cost_usd"] == pytest.approx(0.2)
    # no first_seen_at on C's rows: the chain opened with its first row
    assert chains["C"]["opened_at"] == 3_000 and chains["C"]["resolved_at"] is None


def test_kpis(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    k = kpis(store)
    assert {
        n: k[n]
        for n in (
            "chains",
            "succeeded",
            "failed",
            "manual",
            "self_healed",
            "needed_human",
            "alerts",
            "alerts_suppressed",
            "actions_executed",
            "dead_letters",
        )
    } == {
        "chains": 6,
        "succeeded": 2,
        "failed": 1,
        "manual": 1,
        "self_healed": 1,
        "needed_human": 2,
        "alerts": 9,
        "alerts_suppressed": 3,
        "actions_executed": 6,
        "dead_letters": 1,
    }
    assert k["success_rate"] == pytest.approx(2 / 3)
    assert k["mean_time_to_resolution_ms"] == pytest.approx(5_000)  # (9 000 + 1 000) / 2
    assert k["mean_time_to_resolution_manual_ms"] == pytest.approx(60_000)
    assert k["mean_retries"] == pytest.approx(1.5)
    assert k["cost_usd"] == pytest.approx(2.0)
    assert k["alert_fatigue_reduction"] == pytest.approx(1 - 2 / 9)


def test_reports_window_by_since(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    k = kpis(store, since_ms=25_000)
    assert (k["chains"], k["failed"], k["self_healed"], k["alerts"]) == (2, 1, 1, 0)
    assert k["alert_fatigue_reduction"] is None  # no alert in the window
    assert [c["chain_id"] for c in chain_summaries(store, since_ms=25_000)] == ["B", "E"]


def test_empty_store_reports(store: OutcomeStore) -> None:
    assert report_by_error_type(store) == []
    assert chain_summaries(store) == []
    k = kpis(store)
    assert (k["chains"], k["success_rate"], k["mean_retries"], k["cost_usd"]) == (0, None, None, 0)


def test_schema_is_idempotent_and_mirrors_outcome(target: Target, store: OutcomeStore) -> None:
    store.insert(TRAIL[:3])
    store.ensure_schema()
    again = target.open()  # a second store on the same data
    again.ensure_schema()
    columns = store.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'outcomes'"
        " ORDER BY position",
        {"db": store.database},
    )
    assert [(c["name"], c["type"]) for c in columns] == list(sql.COLUMNS)
    assert [f.name for f in dataclasses.fields(Outcome)] == list(sql.COLUMN_NAMES)
    [table] = store.query(
        "SELECT engine, sorting_key FROM system.tables WHERE database = {db:String}"
        " AND name = 'outcomes'",
        {"db": store.database},
    )
    assert table == {"engine": "ReplacingMergeTree", "sorting_key": "chain_id, event_id"}
    assert store.query("SELECT count() AS n FROM outcomes FINAL") == [{"n": 3}]


def test_rows_survive_close_and_reopen(target: Target) -> None:
    first = target.open()
    first.ensure_schema()
    first.insert(TRAIL)
    before = kpis(first)
    first.close()
    first.close()  # closing twice is harmless
    second = target.open()
    second.ensure_schema()
    assert kpis(second) == before
    assert second.query("SELECT count() AS n FROM outcomes FINAL") == [{"n": len(TRAIL)}]


def test_errors_are_translated(store: OutcomeStore) -> None:
    with pytest.raises(PlatformError) as missing:
        store.query("SELECT * FROM no_such_table")
    assert missing.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(PlatformError) as syntax:
        store.query("SELEKT 1")
    assert syntax.value.kind is ErrorKind.BAD_REQUEST and not syntax.value.retryable


def test_writer_creates_the_schema_and_writes_in_chunks(target: Target) -> None:
    writer = OutcomeWriter(target.open(), max_rows=4)
    writer.write(TRAIL)  # no ensure_schema beforehand
    writer.write([])
    assert kpis(writer.store)["chains"] == 6


def test_schema_adds_columns_an_older_table_lacks(target: Target, store: OutcomeStore) -> None:
    store.query("ALTER TABLE outcomes DROP COLUMN detail")
    writer = OutcomeWriter(store)
    writer.write(TRAIL)  # a new writer applies the schema first
    assert store.query("SELECT detail FROM outcomes FINAL WHERE event_id = 'x1'") == [
        {"detail": "not_json: Expecting value"}
    ]
    store.query("ALTER TABLE outcomes DROP COLUMN detail")  # drifts under a running writer
    with pytest.raises(SinkBackpressure) as pressure:
        writer.write(TRAIL[:1])
    assert pressure.value.cause.kind is ErrorKind.NOT_FOUND
    writer.write(TRAIL[:1])
    assert kpis(store)["chains"] == 6


# --- without a database ----------------------------------------------------------------


class FlakyStore:
    database = "pipemedic"

    def __init__(self, *failures: PlatformError) -> None:
        self.failures = list(failures)
        self.schema_calls = 0
        self.inserted: list[Outcome] = []

    def ensure_schema(self) -> None:
        self.schema_calls += 1

    def insert(self, rows) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.inserted.extend(rows)

    def query(self, sql, params=None):
        return []

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("failure", "retry_after_s"),
    [
        (PlatformError(ErrorKind.TRANSIENT, "down"), 5.0),
        (PlatformError(ErrorKind.THROTTLED, "too many parts", retry_after_s=12), 12),
        (PlatformError(ErrorKind.CONFLICT, "busy"), 5.0),
        (PlatformError(ErrorKind.AUTH, "password rotated"), 60.0),  # slowly, until fixed
    ],
)
def test_writer_signals_backpressure_then_retries(failure: PlatformError, retry_after_s) -> None:
    store = FlakyStore(failure)
    writer = OutcomeWriter(store)
    with pytest.raises(SinkBackpressure) as pressure:
        writer.write(TRAIL[:2])
    assert pressure.value.retry_after_s == retry_after_s and pressure.value.cause is failure
    writer.write(TRAIL[:2])  # the caller replays the same batch
    assert store.inserted == list(TRAIL[:2])


def test_writer_raises_for_rows_that_will_never_fit() -> None:
    failure = PlatformError(ErrorKind.BAD_REQUEST, "Cannot parse input")
    writer = OutcomeWriter(FlakyStore(failure))
    with pytest.raises(PlatformError) as error:
        writer.write(TRAIL[:1])
    assert error.value is failure


def test_writer_recreates_a_vanished_table() -> None:
    store = FlakyStore(PlatformError(ErrorKind.NOT_FOUND, "UNKNOWN_TABLE"))
    writer = OutcomeWriter(store)
    with pytest.raises(SinkBackpressure):
        writer.write(TRAIL[:1])
    writer.write(TRAIL[:1])
    assert store.schema_calls == 2 and store.inserted == [TRAIL[0]]


def test_unreachable_server_is_backpressure() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = ServerStore(f"http://127.0.0.1:{port}", connect_timeout_s=1, send_receive_timeout_s=2)
    writer = OutcomeWriter(store, retry_after_s=3)
    with pytest.raises(SinkBackpressure) as pressure:
        writer.write(TRAIL[:1])
    assert pressure.value.cause.kind is ErrorKind.TRANSIENT and pressure.value.retry_after_s == 3
    store.close()


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)", ErrorKind.THROTTLED),
        (
            "Code: 241. DB::Exception: Memory limit exceeded. (MEMORY_LIMIT_EXCEEDED) (version 25.8)",
            ErrorKind.TRANSIENT,
        ),
        (
            "Code: 516. DB::Exception: pipemedic: Authentication failed. (AUTHENTICATION_FAILED)",
            ErrorKind.AUTH,
        ),
        (
            "Code: 81. DB::Exception: Database nope does not exist. (UNKNOWN_DATABASE)",
            ErrorKind.NOT_FOUND,
        ),
        ("Code: 62. DB::Exception: Syntax error (in query). (SYNTAX_ERROR)", ErrorKind.BAD_REQUEST),
        ("something without a name", ErrorKind.BAD_REQUEST),
    ],
)
def test_translate_error(message: str, kind: ErrorKind) -> None:
    from streams.adapters.clickhouse import translate_error

    assert translate_error(RuntimeError(message)).kind is kind


def test_http_status_without_clickhouse_code() -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    from streams.adapters.clickhouse import _translate_client_error

    gateway = _translate_client_error(DatabaseError("HTTP driver received HTTP status 503"))
    assert gateway.kind is ErrorKind.TRANSIENT and gateway.status == 503
    denied = _translate_client_error(DatabaseError("HTTP driver received HTTP status 401"))
    assert denied.kind is ErrorKind.AUTH


# --- config ----------------------------------------------------------------------------


def test_open_store_chooses_by_url(tmp_path: Path) -> None:
    server = open_store(
        ClickHouseConfig(url="https://ch.example.net", user="pm", password=SecretStr("s3cret"))
    )
    assert isinstance(server, ServerStore)  # lazy: nothing is contacted yet
    assert (server.host, server.port, server.secure, server.user, server.database) == (
        "ch.example.net",
        8443,
        True,
        "pm",
        "pipemedic",
    )
    assert "s3cret" not in repr(server)
    assert "s3cret" not in repr(ClickHouseConfig(password=SecretStr("s3cret")))
    embedded = open_store(ClickHouseConfig(path=str(tmp_path / "ch")))
    try:
        assert isinstance(embedded, ChdbStore) and (tmp_path / "ch").is_dir()
    finally:
        embedded.close()
    with pytest.raises(ValueError):
        open_store(ClickHouseConfig())


def test_server_url_forms() -> None:
    s = ServerStore("http://u%40x:p%3Aw@clickhouse:8123/audit")
    assert (s.host, s.port, s.secure, s.user, s.database) == (
        "clickhouse",
        8123,
        False,
        "u@x",
        "audit",
    )
    assert s._password.get_secret_value() == "p:w"
    # what the URL says beats the (often default) arguments
    s = ServerStore("http://pm:pw@clickhouse:8123", user="default", password="", database="x")
    assert (s.user, s._password.get_secret_value(), s.database) == ("pm", "pw", "x")
    assert ServerStore("clickhouse", user="a", database="b").port == 8123
    with pytest.raises(ValueError):
        ServerStore("tcp://clickhouse:9000")
    with pytest.raises(ValueError):
        ServerStore("http://clickhouse:8123", database="drop table; --")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01 00:00:00.000"),
        (1_700_000_000_123, "2023-11-14 22:13:20.123"),
        (-5, "1970-01-01 00:00:00.000"),  # clamped: one bad row must not block a batch
        (10**15, "2299-12-31 23:59:59.999"),
    ],
)
def test_clickhouse_time(ms: int, text: str) -> None:
    assert clickhouse_time(ms) == text


def test_a_duplicate_after_the_end_never_becomes_the_chains_state(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    late = row("a-late", 99_000, "A", "duplicate", alert_id="a-9", **GT)
    store.insert((late,))
    chain = by_key(chain_summaries(store), "chain_id")["A"]
    assert (chain["final_state"], chain["result"], chain["time_to_resolution_ms"]) == (
        "resolved",
        "remediated",
        9_000,
    )
    assert chain["duplicates"] == 2


# rows that reach the store after their chain is final: a duplicate alert classified
# otherwise, a late alert, a redelivered step's report, a platform retry noticed late
LATE: tuple[Outcome, ...] = (
    row("a-l1", 90_000, "A", "received", alert_id="a-8", error_type="Other", action="manual"),
    row("a-l2", 90_100, "A", "duplicate", alert_id="a-8", error_type="Other", action="manual"),
    row("b-l1", 91_000, "B", "failed", attempt=3, first_seen_at=2_000, **GT),
    row("b-l2", 92_000, "B", "duplicate", alert_id="b-9", first_seen_at=2_000, **GT),
    row("c-l1", 93_000, "C", "waiting", error_type="UserErrorColumnNameInvalid"),
    row("c-l2", 93_100, "C", "received", alert_id="c-2", error_type="UserErrorColumnNameInvalid"),
    row("e-l1", 94_000, "E", "executed", attempt=1, error_type="ThrottlingError"),
)
CHAIN_FIELDS = (
    "final_state", "result", "resolved_by", "error_type", "action", "attempts",
    "opened_at", "resolved_at", "time_to_resolution_ms",
)  # fmt: skip
# what a chain ended as; the KPIs that count chains
CHAIN_KPIS = (
    "chains", "succeeded", "failed", "manual", "self_healed", "needed_human", "success_rate",
    "mean_time_to_resolution_ms", "mean_time_to_resolution_manual_ms", "mean_retries",
)  # fmt: skip


def test_rows_after_the_end_change_no_chain_summary(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    before = {c["chain_id"]: {f: c[f] for f in CHAIN_FIELDS} for c in chain_summaries(store)}
    kpis_before = {k: kpis(store)[k] for k in CHAIN_KPIS}
    store.insert(LATE)
    after = {c["chain_id"]: {f: c[f] for f in CHAIN_FIELDS} for c in chain_summaries(store)}
    assert after == before
    assert {k: kpis(store)[k] for k in CHAIN_KPIS} == kpis_before
    assert (after["B"]["final_state"], after["B"]["result"]) == ("resolved", "gave_up")
    assert after["B"]["time_to_resolution_ms"] == 60_000
    # the per-chain view agrees with the KPIs
    chains = chain_summaries(store)
    assert sum(c["result"] == "remediated" for c in chains) == kpis(store)["succeeded"]
    # a replayed late row counts once, like any other
    store.insert(LATE[::-1])
    assert {c["chain_id"]: {f: c[f] for f in CHAIN_FIELDS} for c in chain_summaries(store)} == (
        before
    )


def test_a_resolved_chain_that_starts_again_is_open_then_ends_again(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    again = (
        row("a-r1", 100_000, "A", "received", alert_id="a-20", first_seen_at=1_000, **GT),
        row("a-r2", 100_100, "A", "scheduled", attempt=1, first_seen_at=1_000, **GT),
    )
    store.insert(again)
    chain = by_key(chain_summaries(store), "chain_id")["A"]
    assert (chain["final_state"], chain["result"], chain["resolved_at"]) == (
        "scheduled",
        "open",
        None,
    )
    store.insert((row("a-r3", 120_000, "A", "resolved", attempt=1, first_seen_at=1_000, **GT),))
    chain = by_key(chain_summaries(store), "chain_id")["A"]
    assert (chain["final_state"], chain["result"], chain["resolved_at"]) == (
        "resolved",
        "remediated",
        120_000,
    )


def test_alerts_outside_the_estate_are_counted_as_ignored(store: OutcomeStore) -> None:
    ignored = row("i1", 5_000, "", "ignored", alert_id="rogue-1", source="adf")
    store.insert((*TRAIL, ignored))
    k = kpis(store)
    assert k["ignored_outside_estate"] == 1
    assert "" not in by_key(chain_summaries(store), "chain_id")  # no chain was opened


# --- chain summaries kept on insert (clickhouse_chains.py) ------------------------------


def chains_table(store: OutcomeStore, view: str) -> list[dict]:
    rows = store.query(f"SELECT * FROM {view} ORDER BY chain_id")
    for r in rows:
        r["cost_usd"] = round(r["cost_usd"], 9)  # the states add costs in another order
    return rows


def random_trail(seed: int, chains: int = 150) -> list[Outcome]:
    """Chains of random transitions: same-ms ties, late and reopening rows, values that
    change and go empty, alert rows classified otherwise, attempts, costs."""
    import random

    rng = random.Random(seed)
    states = [
        "received", "duplicate", "waiting", "scheduled", "observed", "awaiting_approval",
        "executed", "retrying", "failed", "resolved", "gave_up", "manual", "dead_letter",
    ]  # fmt: skip
    rows = []
    for c in range(chains):
        picked: set[tuple[int, str]] = set()
        for _ in range(rng.randint(1, 9)):
            at, state = rng.randint(1, 40) * 1_000, rng.choice(states)
            if (at, state) in picked:  # equal keys make argMax arbitrary in both
                continue
            picked.add((at, state))
            rows.append(
                row(
                    f"r{c}-{len(rows)}",
                    at,
                    f"ch{c}",
                    state,
                    alert_id=f"al{rng.randint(0, 3)}" if state in ("received", "duplicate") else "",
                    source=rng.choice(["", "adf", "databricks"]),
                    scope=rng.choice(["", "adf-prod", "ws-1"]),
                    pipeline=rng.choice(["", "Copy", "Rollup"]),
                    error_type=rng.choice(["", "GatewayTimeout", "Other"]),
                    risk=rng.choice(["", "low", "high"]),
                    action=rng.choice(["", "retry_pipeline", "repair_job", "manual"]),
                    attempt=rng.choice([0, 0, 1, 2, 3]),
                    cost_usd=rng.choice([0.0, 0.0, 0.1, 0.25]),
                    first_seen_at=rng.choice([0, 500, 1_000]),
                )
            )
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_folded_summaries_equal_the_summaries_from_rows(store: OutcomeStore, seed: int) -> None:
    trail = random_trail(seed)
    for start in range(0, len(trail), 37):  # blocks split chains: states merge across them
        store.insert(trail[start : start + 37])
    store.insert(trail[::3])  # replays in other batches
    expected = chains_table(store, "chains_from_rows")
    assert len(expected) == len({r.chain_id for r in trail})
    assert chains_table(store, "chains") == expected
    store.query("OPTIMIZE TABLE chain_state FINAL")  # and after the states are merged
    assert chains_table(store, "chains") == expected


def test_trail_and_late_rows_equal_the_summaries_from_rows(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    assert chains_table(store, "chains") == chains_table(store, "chains_from_rows")
    store.insert(LATE)
    assert chains_table(store, "chains") == chains_table(store, "chains_from_rows")


def test_summaries_are_read_from_the_folded_state(store: OutcomeStore) -> None:
    store.insert(TRAIL)
    before = chain_summaries(store)
    [state] = store.query("SELECT uniqExact(chain_id) AS n FROM chain_state")
    assert state["n"] == 6
    # without the rows, the chains that have nothing after their end are still summarised
    store.query("TRUNCATE TABLE outcomes")
    assert chain_summaries(store) == before
    # a chain with a row after its end is summarised from its rows instead: here only the
    # late row is left of them
    store.insert((row("e-l1", 94_000, "E", "executed", attempt=1, error_type="Other"),))
    after = by_key(chain_summaries(store), "chain_id")
    assert after["E"]["final_state"] == "executed" != by_key(before, "chain_id")["E"]["final_state"]
    assert {k: v for k, v in after.items() if k != "E"} == {
        c["chain_id"]: c for c in before if c["chain_id"] != "E"
    }


# how older versions created the table: no partitions, no chain_state
OLD_OUTCOMES = (
    "CREATE TABLE {db}.outcomes\n(\n    "
    + ",\n    ".join(f"{n} {t}" for n, t in sql.COLUMNS)
    + "\n)\nENGINE = ReplacingMergeTree\nORDER BY (chain_id, event_id)\n"
    "SETTINGS non_replicated_deduplication_window = 1000"
)


def layout(store: OutcomeStore) -> dict[str, str]:
    rows = store.query(
        "SELECT name, partition_key FROM system.tables WHERE database = {db:String}",
        {"db": store.database},
    )
    return {r["name"]: r["partition_key"] for r in rows}


def test_a_store_made_by_an_older_version_keeps_working(target: Target) -> None:
    old = target.open()
    old.ensure_schema()  # the database, then back to what an older version left
    for name in ("chains", "chains_from_rows", "chain_state_mv", "chain_state", "outcomes"):
        old.query(f"DROP TABLE {name}")
    old.query(OLD_OUTCOMES.format(db=old.database))
    old.insert(TRAIL)
    assert "chain_state" not in layout(old)
    old.close()
    store = target.open()
    OutcomeWriter(store).write(LATE)  # a new version's writer, on the old data
    assert chains_table(store, "chains") == chains_table(store, "chains_from_rows")
    assert len(chain_summaries(store)) == 6  # the old rows were folded into chain_state
    tables = layout(store)
    assert {"outcomes", "chain_state", "chain_state_mv", "chains"} <= set(tables)
    if isinstance(store, ChdbStore):  # its only owner moves the table to the new layout
        assert tables["outcomes"] == sql.PARTITION_KEY
    else:  # a server's is left as it is for an operator (README)
        assert tables["outcomes"] == ""
    assert store.query("SELECT count() AS n FROM outcomes FINAL") == [{"n": len(TRAIL) + len(LATE)}]
    store.ensure_schema()  # once folded, not again
    [state] = store.query("SELECT comment FROM system.tables WHERE name = 'chain_state'"
                          " AND database = {db:String}", {"db": store.database})  # fmt: skip
    assert "folded from outcomes" in state["comment"]


def test_outcomes_are_partitioned_by_month(store: OutcomeStore) -> None:
    assert layout(store)["outcomes"] == "toYYYYMM(at)"
    store.insert((row("m1", 1_700_000_000_000, "M", "received"), row("m2", 1, "M", "manual")))
    parts = store.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {db:String}"
        " AND table = 'outcomes' AND active ORDER BY partition",
        {"db": store.database},
    )
    assert [p["partition"] for p in parts] == ["197001", "202311"]


def test_ttl_removes_old_rows_and_their_chains(target: Target, tmp_path: Path) -> None:
    import time

    now_ms = int(time.time() * 1000)
    store = target.open()
    store.ttl_days = 30
    store.ensure_schema()
    store.insert(TRAIL)  # 1970: long expired
    store.insert((row("n1", now_ms, "N", "received"), row("n2", now_ms + 1, "N", "manual")))
    store.query("OPTIMIZE TABLE outcomes FINAL")
    store.query("OPTIMIZE TABLE chain_state FINAL")
    assert store.query("SELECT DISTINCT chain_id FROM outcomes") == [{"chain_id": "N"}]
    assert [c["chain_id"] for c in chain_summaries(store)] == ["N"]
    # the setting changes: the tables follow
    engines = "SELECT name, engine_full FROM system.tables WHERE database = {db:String}"
    ttl = {r["name"]: r["engine_full"] for r in store.query(engines, {"db": store.database})}
    assert "toIntervalDay(30)" in ttl["outcomes"] and "toIntervalDay(30)" in ttl["chain_state"]
    store.ttl_days = 0
    store.ensure_schema()
    ttl = {r["name"]: r["engine_full"] for r in store.query(engines, {"db": store.database})}
    assert " TTL " not in ttl["outcomes"] and " TTL " not in ttl["chain_state"]
