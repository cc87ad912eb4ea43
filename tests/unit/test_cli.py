"""The command line as a tool: version, help, exit codes, one line per expected failure."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from pipemedic import cli
from pipemedic.failures import BrokerUnreachable, one_line
from streams.settings import Settings


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PIPEMEDIC_* setting of the machine leaks in; data goes to the test's folder."""
    for name in [n for n in os.environ if n.startswith("PIPEMEDIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIPEMEDIC_DATA_DIR", str(tmp_path / "data"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"pipemedic {version('pipemedic')}\n"


def test_every_command_and_argument_has_help() -> None:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == set(cli.COMMANDS)
    described = {choice.dest: choice.help for choice in commands._choices_actions}
    assert all(described[name] for name in cli.COMMANDS), described
    parsers = [("pipemedic", parser), *commands.choices.items()]
    missing = [
        f"{name} {action.dest}"
        for name, each in parsers
        for action in each._actions
        if action is not commands and not action.help
    ]
    assert missing == []


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text
    assert "\n  1    runtime failure" in text and "\n  2    usage error" in text


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["send"],
        ["approve"],
        ["simulator"],
        ["demo", "--timeout", "soon"],
        ["rules", "--nope"],
        ["pause", "--scope"],
    ],
    ids=repr,
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2
    assert "pipemedic" in capsys.readouterr().err


BAD_RULES = "rules: [\n"
UNKNOWN_RULE_KEY = "rules:\n  - name: Gateway timeout\n    colour: red\n"
BAD_ESTATE = "bogus: 1\n"
BAD_WORLD = "nope: 1\n"
ALERTS = '{"a": 1}\n\n{"b": "${now-5m}"}\n'
BAD_ALERTS = '{"a": 1}\n{oops\n'


def expected_failures() -> list[tuple[str, list[str], dict[str, str], dict[str, str], str]]:
    """(id, argv, files to write, environment, what the one line must say)."""
    refused = f"kafka://127.0.0.1:{closed_port()}"
    return [
        ("send: missing file", ["send", "{tmp}/nope.jsonl"], {}, {}, "no such file: "),
        ("send: not JSON", ["send", "{tmp}/a.jsonl"], {"a.jsonl": BAD_ALERTS}, {}, "a.jsonl:2:2"),
        (
            "send: no broker",
            ["send", "{tmp}/a.jsonl"],
            {"a.jsonl": ALERTS},
            {"PIPEMEDIC_BROKER_URL": refused},
            f"no broker answers at {refused}",
        ),
        (
            "send: bad broker URL",
            ["send", "{tmp}/a.jsonl"],
            {"a.jsonl": ALERTS},
            {"PIPEMEDIC_BROKER_URL": "kafka://127.0.0.1:x"},
            "bad PIPEMEDIC_BROKER_URL",
        ),
        ("approve: no broker", ["approve", "c1"], {}, {"PIPEMEDIC_BROKER_URL": refused}, "broker"),
        ("pause: no broker", ["pause"], {}, {"PIPEMEDIC_BROKER_URL": refused}, "broker"),
        (
            "resume: no broker",
            ["resume", "--scope", "x"],
            {},
            {"PIPEMEDIC_BROKER_URL": refused},
            "broker",
        ),
        ("topics: no broker", ["topics"], {}, {"PIPEMEDIC_BROKER_URL": refused}, "broker"),
        (
            "bad setting",
            ["send", "{tmp}/a.jsonl"],
            {"a.jsonl": ALERTS},
            {"PIPEMEDIC_MODE": "bogus"},
            "bad setting: PIPEMEDIC_MODE: ",
        ),
        ("rules: missing", ["rules", "--file", "{tmp}/r.yaml"], {}, {}, "rules file: "),
        ("rules: not YAML", ["rules", "--file", "{tmp}/r.yaml"], {"r.yaml": BAD_RULES}, {}, "YAML"),
        (
            "rules: unknown key",
            ["rules", "--file", "{tmp}/r.yaml"],
            {"r.yaml": UNKNOWN_RULE_KEY},
            {},
            "colour",
        ),
        (
            "topics: bad rules variable",
            ["topics", "--list"],
            {"r.yaml": BAD_RULES},
            {"PIPEMEDIC_RULES_FILE": "{tmp}/r.yaml"},
            "rules file: ",
        ),
        (
            "worker: bad estate",
            ["worker"],
            {"e.yaml": BAD_ESTATE},
            {"PIPEMEDIC_ESTATE_FILE": "{tmp}/e.yaml", "PIPEMEDIC_BROKER_URL": refused},
            "bogus",
        ),
        (
            "worker: missing estate",
            ["worker"],
            {},
            {"PIPEMEDIC_ESTATE_FILE": "{tmp}/e.yaml"},
            "PIPEMEDIC_ESTATE_FILE",
        ),
        ("worker: no broker", ["worker"], {}, {"PIPEMEDIC_BROKER_URL": refused}, "no broker"),
        ("demo: missing world", ["demo", "--world", "{tmp}/w.yaml"], {}, {}, "no such file"),
        (
            "demo: bad world",
            ["demo", "--world", "{tmp}/w.yaml"],
            {"w.yaml": BAD_WORLD},
            {},
            "world file: ",
        ),
        (
            "demo: alerts not JSON",
            ["demo", "--alerts", "{tmp}/a.jsonl"],
            {"a.jsonl": BAD_ALERTS},
            {},
            "not JSON",
        ),
        (
            "simulator: bad world",
            ["simulator", "--world", "{tmp}/w.yaml"],
            {"w.yaml": BAD_WORLD},
            {},
            "unknown key",
        ),
        (
            "report: no ClickHouse",
            ["report"],
            {},
            {"PIPEMEDIC_CLICKHOUSE_URL": f"http://127.0.0.1:{closed_port()}"},
            "ClickHouse",
        ),
    ]


@pytest.mark.parametrize(
    ("argv", "files", "env", "says"),
    [case[1:] for case in expected_failures()],
    ids=[case[0] for case in expected_failures()],
)
def test_expected_failure_is_one_line_and_exit_1(
    argv: list[str],
    files: dict[str, str],
    env: dict[str, str],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    started = time.monotonic()
    code, out, err = run([arg.format(tmp=tmp_path) for arg in argv], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("pipemedic: error: ") and err.count("\n") == 1, err
    assert says in err
    assert "Traceback" not in err
    assert time.monotonic() - started < 30  # imports included; aiokafka alone would take 40 s


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "send", str(tmp_path / "nope.jsonl")])
    with pytest.raises(FileNotFoundError):  # after the command too
        cli.main(["send", str(tmp_path / "nope.jsonl"), "--debug"])


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise KeyError("a bug, not an operator's mistake")

    monkeypatch.setitem(cli.COMMANDS, "rules", broken)
    with pytest.raises(KeyError):
        cli.main(["rules"])


def test_interrupted_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "report", interrupted)
    assert run(["report"], capsys) == (130, "", "pipemedic: interrupted\n")


def test_a_listener_that_is_not_kafka_fails_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Something accepts the connection but never answers: the exchange is cut off."""
    monkeypatch.setattr(cli, "BROKER_EXCHANGE_TIMEOUT_S", 0.01)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"kafka://127.0.0.1:{listener.getsockname()[1]}"
        settings = Settings(broker_url=url)
        with pytest.raises(BrokerUnreachable, match="did not finish"):
            cli.on_broker(settings, lambda bootstrap: asyncio.Event().wait())


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("one line", "one line"),
        ("f.yaml: not valid YAML: while parsing\nexpected a node\n  line 2:\n    x\n    ^", None),
        ("rules[0]: bad\nrules[3]: worse", "rules[0]: bad; rules[3]: worse"),
        ("ends with:\n", "ends with"),
    ],
)
def test_one_line(text: str, line: str | None) -> None:
    result = one_line(text)
    assert "\n" not in result and "^" not in result
    if line is not None:
        assert result == line


def cli_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipemedic", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_as_a_process_exit_codes_and_stderr(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    quiet = cli_process("rules", "--file", missing)
    assert quiet.returncode == 1
    assert quiet.stderr.startswith("pipemedic: error: rules file: ")
    assert quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr

    loud = cli_process("--debug", "rules", "--file", missing)
    assert loud.returncode == 1
    assert "Traceback (most recent call last)" in loud.stderr

    usage = cli_process("bogus")
    assert usage.returncode == 2
    assert "invalid choice: 'bogus'" in usage.stderr
