"""The worker's log lines: level and shape from settings (``PIPEMEDIC_LOG_LEVEL``, ``_FORMAT``).

Faust's worker (mode) configures the root logger itself when it starts, replacing whatever
was there; so the worker hands it :func:`logging_config`, the ``dictConfig`` mode applies
instead of its own, and ours is the configuration in force. ``json`` writes one object a line,
what log collectors (Azure Monitor, Loki, Elasticsearch) parse without a pattern: ``time``
(UTC, ISO 8601), ``level``, ``logger``, ``message``, and ``exc_info`` with the traceback when
an exception is logged.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the worker: every record at ``level`` or above to
    stderr, as ``fmt`` (``json`` or ``text``)."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"pipemedic": formatter},
        "handlers": {
            "pipemedic": {
                "class": "logging.StreamHandler",
                "formatter": "pipemedic",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["pipemedic"]},
    }
