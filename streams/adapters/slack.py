"""Slack: an incoming webhook (Block Kit), or the Web API with a bot token so that a chain
keeps one message: ``chat.postMessage`` first, then ``chat.update`` on the stored ``ts``.

Incoming webhooks answer with HTTP statuses and a plain-text error (``400
invalid_payload``, ``404 channel_not_found``, ``410 channel_is_archived``, 429 with
``Retry-After``). The Web API answers HTTP 200 even for errors (``{"ok": false, "error"}``);
only rate limiting is a status (429). Its error codes are mapped to the retry policy's kinds
below (first match wins). ``ts`` stays a string: a float would lose digits. Link unfurling
is off for our messages, so no preview fetches an approval link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from streams.adapters.errors import ErrorKind, PlatformError
from streams.adapters.http import error_from_response, json_body, send_json
from streams.policy.notify_message import Message, slack_message

API_URL = "https://slack.com/api"

# Web API error code -> kind; anything else is our request's fault
KIND_BY_ERROR: Mapping[str, ErrorKind] = {
    "ratelimited": ErrorKind.THROTTLED,
    "not_authed": ErrorKind.AUTH,
    "invalid_auth": ErrorKind.AUTH,
    "account_inactive": ErrorKind.AUTH,
    "token_revoked": ErrorKind.AUTH,
    "missing_scope": ErrorKind.AUTH,
    "channel_not_found": ErrorKind.NOT_FOUND,
    "message_not_found": ErrorKind.NOT_FOUND,
    "internal_error": ErrorKind.TRANSIENT,
    "fatal_error": ErrorKind.TRANSIENT,
    "service_unavailable": ErrorKind.TRANSIENT,
    "request_timeout": ErrorKind.TRANSIENT,
}


@dataclass(frozen=True)
class SlackConfig:
    webhook_url: SecretStr | None = field(default=None, repr=False)
    bot_token: SecretStr | None = field(default=None, repr=False)
    channel: str = ""  # with a bot token: the channel id to post to
    api_url: str = API_URL
    timeout_s: float = 15.0


class SlackClient:
    kind = "slack"

    def __init__(self, name: str, config: SlackConfig, http: httpx.AsyncClient) -> None:
        self.name, self._config, self._http = name, config, http

    async def deliver(self, message: Message, ref: Mapping[str, str]) -> dict[str, str]:
        body = slack_message(message)
        if self._config.bot_token is None:
            await self._webhook(body)
            return {}
        if ref.get("ts"):
            try:
                return await self._call(
                    "chat.update", {**body, "channel": ref["channel"], "ts": ref["ts"]}
                )
            except PlatformError as error:
                if error.kind is not ErrorKind.NOT_FOUND:
                    raise
                # the message is gone (deleted by someone): a new one carries the chain on
        channel = {"channel": self._config.channel, "unfurl_links": False, "unfurl_media": False}
        return await self._call("chat.postMessage", {**body, **channel})

    async def _webhook(self, body: dict) -> None:
        assert self._config.webhook_url is not None
        what = f"slack webhook {self.name}"
        response = await send_json(
            self._http,
            "POST",
            self._config.webhook_url.get_secret_value(),
            body=body,
            headers={},
            timeout_s=self._config.timeout_s,
            what=what,
        )
        if not response.is_success:
            raise error_from_response(response, what)

    async def _call(self, method: str, body: dict) -> dict[str, str]:
        assert self._config.bot_token is not None
        what = f"slack {method} {self.name}"
        response = await send_json(
            self._http,
            "POST",
            f"{self._config.api_url.rstrip('/')}/{method}",
            body=body,
            headers={"Authorization": f"Bearer {self._config.bot_token.get_secret_value()}"},
            timeout_s=self._config.timeout_s,
            what=what,
        )
        if not response.is_success:
            raise error_from_response(response, what)
        answer = json_body(response, what)
        if not answer.get("ok"):
            code = str(answer.get("error", "unknown_error"))
            kind = KIND_BY_ERROR.get(code, ErrorKind.BAD_REQUEST)
            raise PlatformError(kind, f"{what}: {code}", status=response.status_code)
        return {"channel": str(answer.get("channel", "")), "ts": str(answer.get("ts", ""))}
