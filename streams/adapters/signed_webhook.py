"""A generic webhook: the message as JSON, signed with HMAC-SHA256 (Standard Webhooks).

The signature covers a message id, the timestamp and the exact bytes sent
(:func:`streams.policy.signing.webhook_headers`), so a receiver can check the sender and
refuse a replay. The id is the same for every retry of one delivery (chain, transition),
so a receiver can drop a duplicate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from streams.adapters.http import error_from_exception, error_from_response
from streams.policy.ids import event_id
from streams.policy.notify_message import Message, webhook_body
from streams.policy.signing import webhook_headers


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: SecretStr = field(repr=False)
    timeout_s: float = 15.0


class SignedWebhookClient:
    kind = "webhook"

    def __init__(
        self,
        name: str,
        config: WebhookConfig,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name, self._config, self._http, self._clock = name, config, http, clock

    async def deliver(self, message: Message, ref: Mapping[str, str]) -> dict[str, str]:
        what = f"webhook {self.name}"
        body = json.dumps(webhook_body(message), separators=(",", ":")).encode()
        message_id = "msg_" + event_id(message.chain_id, message.transition, self.name)
        secret = self._config.secret.get_secret_value().encode()
        headers = {
            "Content-Type": "application/json",
            **webhook_headers(secret, message_id, int(self._clock()), body),
        }
        try:
            response = await self._http.post(
                self._config.url, content=body, headers=headers, timeout=self._config.timeout_s
            )
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, what) from None
        if not response.is_success:
            raise error_from_response(response, what)
        return {}
