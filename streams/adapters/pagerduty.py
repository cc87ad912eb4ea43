"""PagerDuty Events API v2: one incident per chain.

``trigger`` with ``dedup_key`` = the chain id when the chain needs people (a redelivered or
repeated trigger only adds a log entry to the open alert), ``resolve`` with the same key
when it is fixed; severity from the chain's risk, ``payload.summary`` within 1,024
characters, ``links`` to the run (:func:`streams.policy.notify_message.pagerduty_event`).
The ``routing_key`` in the body is the credential. 202 is accepted; 400 is our event and is
not retried; 429 and 5xx are retried by the caller through the delay tiers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from streams.adapters.http import error_from_response, send_json
from streams.policy.notify_message import Message, pagerduty_event

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True)
class PagerDutyConfig:
    routing_key: SecretStr = field(repr=False)
    url: str = EVENTS_URL
    timeout_s: float = 15.0


class PagerDutyClient:
    kind = "pagerduty"

    def __init__(self, name: str, config: PagerDutyConfig, http: httpx.AsyncClient) -> None:
        self.name, self._config, self._http = name, config, http

    async def deliver(self, message: Message, ref: Mapping[str, str]) -> dict[str, str]:
        what = f"pagerduty {self.name}"
        event = pagerduty_event(message, self._config.routing_key.get_secret_value())
        response = await send_json(
            self._http,
            "POST",
            self._config.url,
            body=event,
            headers={},
            timeout_s=self._config.timeout_s,
            what=what,
        )
        if not response.is_success:
            raise error_from_response(response, what)
        return {"dedup_key": event["dedup_key"]}
