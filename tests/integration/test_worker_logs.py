"""A real worker with PIPEMEDIC_LOG_FORMAT=json logs JSON lines, Faust's and ours alike,
after Faust has set up its logging (the embedded stack, one worker process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipemedic.stack import DEMO_DATA, EmbeddedStack

pytestmark = pytest.mark.integration


def test_the_worker_logs_json_lines(tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path, DEMO_DATA / "world.yaml", log_format="json") as stack:
        assert stack.worker is not None
        stack.worker.wait_ready()
        log_path = stack.worker.log_path
        stack.stop_worker()
    # chDB's native code prints one line of its own to stderr as the process exits
    native = "Exception in global_context->shutdown()"
    text = log_path.read_text().splitlines()
    lines = [line for line in text if line.strip() and not line.startswith(native)]
    parsed = [json.loads(line) for line in lines]  # every line, or this fails naming it
    assert all({"time", "level", "logger", "message"} <= p.keys() for p in parsed)
    loggers = {p["logger"] for p in parsed}
    assert any(name.startswith("faust") or name.startswith("mode") for name in loggers), loggers
    # our own start-up line, logged from a Faust task once Faust's logging is set up
    assert any(
        p["logger"] == "pipemedic.worker" and p["message"].startswith("event loop: ")
        for p in parsed
    ), loggers
    assert {p["level"] for p in parsed} <= {"INFO", "WARNING", "ERROR", "CRITICAL"}
    # logged while the worker is built, before Faust's start-up: JSON too
    assert any("PIPEMEDIC_WEBHOOK_API_KEY is not set" in p["message"] for p in parsed)
