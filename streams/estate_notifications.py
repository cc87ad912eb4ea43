"""The estate's ``notifications:`` section: channels named once, a first-match routing table.

::

    notifications:
      channels:                      # secrets as env:NAME or file:/path, never inline
        oncall:   {type: pagerduty, routing_key: env:PD_ROUTING_KEY}
        ops:      {type: slack, bot_token: env:SLACK_BOT_TOKEN, channel: C0123ABCD}
        ops-hook: {type: slack, webhook_url: env:SLACK_WEBHOOK_URL}
        data-eng: {type: teams, url: env:TEAMS_WORKFLOW_URL}
        audit:    {type: webhook, url: https://hooks.example/pipemedic, secret: env:HOOK_SECRET}
      routes:                        # first match wins; omitted keys match anything
        - {scope: "adf-sales-*", risk: high, targets: [oncall, ops]}
        - {source: databricks, error_type: "Library*", targets: [data-eng]}
        - {targets: [ops-hook]}
      retry_limit: 10                # deliveries per target and transition before giving up
      approval_url: https://pipemedic.example.com   # the worker's web address, for links
      approval_ttl_s: 3600           # how long an approval link (and the request) is valid

Loaded with the rest of the estate (:mod:`streams.estate`), with the same strictness: an
unknown key or a route naming a channel that is not defined is an error naming its place.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.adapters.credentials import SecretRef
from streams.adapters.pagerduty import EVENTS_URL
from streams.adapters.slack import API_URL
from streams.policy.notices import Route


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeamsChannel(_Section):
    type: Literal["teams"]
    url: SecretRef  # the Workflows webhook URL carries its own sig=: a secret


class SlackChannel(_Section):
    type: Literal["slack"]
    webhook_url: SecretRef | None = None
    bot_token: SecretRef | None = None
    channel: str = ""  # with bot_token: the channel id (C...)
    api_url: str = API_URL

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackChannel:
        if (self.webhook_url is None) == (self.bot_token is None):
            raise ValueError("a slack channel takes webhook_url or bot_token (with channel)")
        if self.bot_token is not None and not self.channel:
            raise ValueError("bot_token needs channel (the channel id to post to)")
        return self


class PagerDutyChannel(_Section):
    type: Literal["pagerduty"]
    routing_key: SecretRef
    url: str = EVENTS_URL


class WebhookChannel(_Section):
    type: Literal["webhook"]
    url: str
    secret: SecretRef


Channel = Annotated[
    TeamsChannel | SlackChannel | PagerDutyChannel | WebhookChannel, Field(discriminator="type")
]


class RouteEntry(_Section):
    targets: list[str]
    scope: str = "*"
    source: str = "*"
    risk: str = "*"
    error_type: str = "*"
    transition: str = "*"

    def route(self) -> Route:
        return Route(
            targets=tuple(self.targets),
            scope=self.scope.lower(),
            source=self.source,
            risk=self.risk,
            error_type=self.error_type,
            transition=self.transition,
        )


class NotificationsSection(_Section):
    channels: dict[str, Channel] = {}
    routes: list[RouteEntry] = []
    retry_limit: int = Field(default=10, ge=1)
    approval_url: str = ""
    approval_ttl_s: int = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _targets_exist(self) -> NotificationsSection:
        defined = ", ".join(self.channels) or "none"
        for index, entry in enumerate(self.routes):
            for target in entry.targets:
                if target not in self.channels:
                    raise ValueError(
                        f"routes[{index}] names channel {target!r}, which is not defined "
                        f"under notifications.channels (defined: {defined})"
                    )
        return self

    def routing_table(self) -> tuple[Route, ...]:
        return tuple(entry.route() for entry in self.routes)
