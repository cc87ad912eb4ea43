"""Microsoft Teams through a Workflows (Power Automate) webhook: one Adaptive Card per POST.

The Office 365 connector webhooks are retired; a Workflows flow "When a Teams webhook
request is received" takes the ``message`` envelope with an Adaptive Card 1.4
(:func:`streams.policy.notify_message.teams_card`). It answers 202 with an empty body before
the card is rendered, so any 2xx is delivered. The URL carries its own authorization
(``sig=``): it is a secret, never logged, never put in an error message. A webhook card
cannot be edited, so a chain's later transition is a follow-up card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from streams.adapters.http import error_from_response, send_json
from streams.policy.notify_message import Message, teams_card


@dataclass(frozen=True)
class TeamsConfig:
    url: SecretStr = field(repr=False)
    timeout_s: float = 15.0


class TeamsClient:
    kind = "teams"

    def __init__(self, name: str, config: TeamsConfig, http: httpx.AsyncClient) -> None:
        self.name, self._config, self._http = name, config, http

    async def deliver(self, message: Message, ref: Mapping[str, str]) -> dict[str, str]:
        what = f"teams {self.name}"
        response = await send_json(
            self._http,
            "POST",
            self._config.url.get_secret_value(),
            body=teams_card(message),
            headers={},
            timeout_s=self._config.timeout_s,
            what=what,
        )
        if not response.is_success:
            raise error_from_response(response, what)
        return {}
