"""The worker's logs: PIPEMEDIC_LOG_LEVEL and PIPEMEDIC_LOG_FORMAT, through mode's own setup."""

from __future__ import annotations

import io
import json
import logging

import pytest
from mode.utils.logging import setup_logging
from pydantic import ValidationError

from pipemedic.logs import JsonFormatter, logging_config
from streams.settings import Settings


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("pipemedic.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_a_json_line_has_time_level_logger_message() -> None:
    line = json.loads(JsonFormatter().format(record("chain %s gave up", "c1")))
    assert line.keys() == {"time", "level", "logger", "message"}
    assert line["level"] == "ERROR" and line["logger"] == "pipemedic.test"
    assert line["message"] == "chain c1 gave up"
    assert line["time"].endswith("+00:00") and "T" in line["time"]


def test_a_json_line_carries_the_exception() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError as exc:
        line = json.loads(JsonFormatter().format(record("failed", exc=exc)))
    assert "ZeroDivisionError: division by zero" in line["exc_info"]
    assert "Traceback" in line["exc_info"] and "\n" not in json.dumps(line)


@pytest.fixture
def restored_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_mode_applies_our_configuration(restored_root_logger, fmt: str, monkeypatch) -> None:
    """What Faust's worker does at start (mode's setup_logging with ``logging_config``)
    leaves our handler, format and level in force, not mode's coloured default."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging(loglevel="WARNING", logging_config=logging_config("WARNING", fmt))
    (handler,) = restored_root_logger.handlers
    assert restored_root_logger.level == logging.WARNING
    logging.getLogger("faust.worker").info("not shown")
    logging.getLogger("pipemedic.worker").warning("shown %d", 1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    if fmt == "json":
        assert isinstance(handler.formatter, JsonFormatter)
        assert json.loads(lines[0])["message"] == "shown 1"
    else:
        assert "[WARNING] pipemedic.worker: shown 1" in lines[0]


def test_settings_take_any_case_and_refuse_the_rest() -> None:
    settings = Settings(log_level="debug", log_format="json")
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert Settings().log_level == "INFO" and Settings().log_format == "text"
    with pytest.raises(ValidationError):
        Settings(log_level="loud")
    with pytest.raises(ValidationError):
        Settings(log_format="xml")
