"""The simulator's call log: every platform request and the status it got.

Tests and benchmarks assert on it ("exactly one createRun", "no call after the 401"), so it
is exact up to ``call_log_limit`` entries (the oldest drop out beyond that, to keep a long
benchmark's memory flat). Secrets sent to the simulator (Azure AD client secrets) are
redacted before they are stored. It is read from other threads (``start_in_thread``), hence
the lock.
"""

from __future__ import annotations

import collections
import fnmatch
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

_SECRET_KEYS = frozenset({"client_secret", "client_assertion", "token", "password"})


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    status: int
    at: float  # epoch seconds when the answer was sent

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["query"] = dict(self.query)
        return data


def redact(body: Any) -> Any:
    if isinstance(body, Mapping):
        return {k: ("***" if k in _SECRET_KEYS else v) for k, v in body.items()}
    return body


class CallLog:
    def __init__(self, limit: int) -> None:
        self._calls: collections.deque[Call] = collections.deque(maxlen=limit)
        self._lock = threading.Lock()

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def matching(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> list[Call]:
        """Calls filtered by method, fnmatch ``path`` pattern (e.g. ``*/createRun``) and status."""
        return [
            call
            for call in self.snapshot()
            if (method is None or call.method == method.upper())
            and (path is None or fnmatch.fnmatchcase(call.path, path))
            and (status is None or call.status == status)
        ]

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        return len(self.matching(method, path, status))
