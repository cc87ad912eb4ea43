"""What the command line tells an operator when something they control is wrong.

A missing or malformed file (alerts, rules, estate, world), a bad setting, a broker or
ClickHouse that does not answer: each is an exception type in :func:`expected_failures`, with
the one line that says what to fix. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class AlertsFileError(ValueError):
    """A line of an alerts file is not JSON."""


class BrokerUnreachable(ConnectionError):
    """Nothing accepts a connection at the configured broker address."""


class BrokerAddressError(ValueError):
    """The configured broker URL does not parse."""


def expected_failures() -> tuple[tuple[type[BaseException], Callable[[Any], str]], ...]:
    """Failures an operator causes and can fix, with what to tell them; first match wins.

    Imported on the way out only, so a command that works does not load them all."""
    import yaml
    from aiokafka.errors import KafkaError
    from faust.exceptions import ImproperlyConfigured
    from pydantic import ValidationError

    from pipemedic.capture import CaptureError
    from pipemedic.embedded import BrokerStartError
    from pipemedic.simulator.world import WorldError
    from streams.adapters.errors import PlatformError
    from streams.estate import EstateError
    from streams.policy.normalize import NormalizeError
    from streams.policy.rules import RulesError

    return (
        (AlertsFileError, str),
        (CaptureError, str),
        (BrokerUnreachable, str),
        (BrokerAddressError, str),
        (EstateError, lambda e: f"{e} (PIPEMEDIC_ESTATE_FILE)"),
        (RulesError, lambda e: f"rules file: {e}"),
        (WorldError, lambda e: f"world file: {e}"),
        (NormalizeError, lambda e: f"not an alert pipemedic reads (a worker dead-letters it): {e}"),
        (ValidationError, _invalid),
        (ImproperlyConfigured, lambda e: f"Faust refused a setting: {e}"),
        (yaml.YAMLError, lambda e: f"not valid YAML: {e}"),
        (KafkaError, lambda e: f"broker: {e}"),
        (BrokerStartError, lambda e: f"embedded broker: {e}"),
        (PlatformError, str),  # ClickHouse unreachable or refusing us
        (FileNotFoundError, lambda e: f"no such file: {e.filename}"),
        (OSError, lambda e: f"{e.strerror}: {e.filename}" if e.filename else repr(e)),
    )


def explain(exc: BaseException) -> str | None:
    """The one line for an expected failure; None for a bug."""
    for kind, say in expected_failures():
        if isinstance(exc, kind):
            return one_line(say(exc))
    return None


def one_line(text: str) -> str:
    """Library messages span lines (YAML marks, validation lists): one line for a terminal."""
    parts = [p.strip() for p in text.splitlines()]
    parts = [p for p in parts if p.strip("^ ")]  # not YAML's caret under the error
    line = ""
    for part in parts:
        line += part if not line else (" " if line.endswith(":") else "; ") + part
    return line.rstrip(":")


def _invalid(exc: Any) -> str:
    """A pydantic error: a setting names its variable, another model its field path."""
    settings = exc.title == "Settings"
    problems = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"]))
        problems.append(f"{'PIPEMEDIC_' + where.upper() if settings else where}: {error['msg']}")
    return ("bad setting: " if settings else f"invalid {exc.title}: ") + "; ".join(problems)
