"""Playbook webhooks: remediation steps that live outside pipemedic (Logic Apps, Functions,
runbooks) and are triggered by one JSON POST.

Decides where a call may go and how hard to try. The URL comes only from
:class:`PlaybookConfig` (an alert can name an action, never an address). A transient failure
(5xx, timeout, dropped connection) is retried a few times right here with a short doubling
backoff, because a webhook blip should not cost a trip through the delay tiers; anything else,
including a throttled answer, goes straight back to the retry policy as a
:class:`PlatformError`. Each POST carries an ``Idempotency-Key`` derived from the ticket and
attempt, so a playbook can drop the duplicate that a retried timeout may cause.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.http import error_from_response, send_json

_MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class PlaybookConfig:
    urls: Mapping[str, str]  # action (e.g. "upstream_check") -> webhook URL
    timeout_s: float = 30.0
    retries: int = 2  # extra attempts after the first, for transient failures only
    backoff_s: float = 1.0  # wait before the first retry; doubles each time
    token: SecretStr | None = field(default=None, repr=False)  # sent as a Bearer token if set


class PlaybookClient:
    def __init__(
        self,
        config: PlaybookConfig,
        http: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._http = http
        self._sleep = sleep

    async def call(self, action: str | enum.Enum, payload: Mapping[str, Any]) -> dict:
        """POST ``payload`` ({ticket_id, error_type, metadata, retry_attempt, max_retries})
        to the playbook of ``action``; returns its JSON answer (``{}`` if it sent none)."""
        name = action.value if isinstance(action, enum.Enum) else str(action)
        url = self._config.urls.get(name)
        if not url:
            raise PlatformError(ErrorKind.BAD_REQUEST, f"no playbook is configured for {name!r}")
        headers = {
            "Idempotency-Key": f"{payload.get('ticket_id', '')}:{payload.get('retry_attempt', 0)}"
        }
        if self._config.token is not None:
            headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
        what = f"playbook {name}"
        for attempt in range(self._config.retries + 1):
            try:
                return await self._post(url, payload, headers, what)
            except PlatformError as error:
                if error.kind is not ErrorKind.TRANSIENT or attempt == self._config.retries:
                    raise
                await self._sleep(min(self._config.backoff_s * 2**attempt, _MAX_BACKOFF_S))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(
        self, url: str, payload: Mapping[str, Any], headers: Mapping[str, str], what: str
    ) -> dict:
        response = await send_json(
            self._http,
            "POST",
            url,
            body=dict(payload),
            headers=headers,
            timeout_s=self._config.timeout_s,
            what=what,
        )
        if not response.is_success:  # a 3xx too: redirects are not followed
            raise error_from_response(response, what)
        if not response.content:
            return {}
        try:
            answer = response.json()
        except ValueError:
            return {"text": response.text[:1000]}  # a playbook may answer "OK"
        return answer if isinstance(answer, dict) else {"result": answer}
