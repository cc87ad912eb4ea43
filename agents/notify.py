"""The notifier: tells people about a chain once, then updates that same message.

Keyed by chain id on ``notifications`` (notices from the chains stage, and retries coming
back from the delay tiers), in batches: one message per partition per step that sends notices
(in observe mode every failure sends one). For each notice the pure policy (:mod:`streams.policy.notices`)
says which targets are due; each is told through its channel adapter, and the message ids
(Slack ``channel``/``ts``; PagerDuty's dedup key is the chain id) are kept in the
``notices`` table so later transitions update the same thread or incident. A delivery that
failed transiently (429, 5xx, timeout) goes back through the delay tiers, honouring
Retry-After; one that failed for good is recorded. Every delivery is an outcome row. The
stage runs beside remediation, on its own topic: a channel that is slow or down delays no
chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from agents.common import CRASH_WORKER, KeyTurns, TableExpiry, log, run_concurrently
from agents.outbox import Outbox
from streams.adapters.errors import PlatformError
from streams.adapters.pagerduty import PagerDutyClient, PagerDutyConfig
from streams.adapters.signed_webhook import SignedWebhookClient, WebhookConfig
from streams.adapters.slack import SlackClient, SlackConfig
from streams.adapters.teams import TeamsClient, TeamsConfig
from streams.app import Topology
from streams.codecs import Undecodable, decode, decode_items
from streams.estate import Estate
from streams.estate_notifications import NotificationsSection
from streams.policy.model import ActionRequest, ChainEvent, ChainEventKind
from streams.policy.notices import (
    EXPIRED_DETAIL,
    Delivery,
    NotifyConfig,
    Told,
    Transition,
    approval_expires_s,
    awaiting_approvals,
    delivery_row,
    due_targets,
    expired_row,
    retry_notice,
    still_undecided,
)
from streams.policy.notify_message import Message, compose
from streams.policy.signing import approval_links

NOTIFY_CONCURRENCY = 32  # notices in flight per worker (one at a time per chain)
APPROVAL_SWEEP_S = 1.0  # how often undecided approvals are checked for expiry


def notice_items(data: bytes) -> list[dict[str, Any]]:
    """The notices in one message of the notifier's topic: a batch, or a single notice as
    versions before the batches sent them (so a topic written by one still drains)."""
    try:
        return decode_items("action_request", data)
    except Undecodable as batch_error:
        try:
            return [decode("action_request", data)]
        except Undecodable:
            raise batch_error from None


class Channel(Protocol):
    kind: str

    async def deliver(self, message: Message, ref: Mapping[str, str]) -> dict[str, str]: ...


def build_channels(
    section: NotificationsSection, http: httpx.AsyncClient, timeout_s: float
) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    for name, spec in section.channels.items():
        if spec.type == "teams":
            channels[name] = TeamsClient(name, TeamsConfig(spec.url, timeout_s), http)
        elif spec.type == "slack":
            config = SlackConfig(
                spec.webhook_url, spec.bot_token, spec.channel, spec.api_url, timeout_s
            )
            channels[name] = SlackClient(name, config, http)
        elif spec.type == "pagerduty":
            config_pd = PagerDutyConfig(spec.routing_key, spec.url, timeout_s)
            channels[name] = PagerDutyClient(name, config_pd, http)
        else:
            config_wh = WebhookConfig(spec.url, spec.secret, timeout_s)
            channels[name] = SignedWebhookClient(name, config_wh, http)
    return channels


class Notifier:
    """Delivers one notice; ``table`` is the Faust table (any mapping in tests)."""

    def __init__(
        self,
        topology: Topology,
        table: Any,
        channels: Mapping[str, Channel],
        config: NotifyConfig,
        *,
        factory_ids: Mapping[str, str] | None = None,
        links: Any = None,  # request -> {decision: url} for approval requests
        chains: Any = None,  # the chains table (co-partitioned): is an approval still open?
        horizon_ms: int = 7 * 24 * 3600 * 1000,
    ) -> None:
        self.topology = topology
        self.chains = chains if chains is not None else {}
        # chain id -> (expiry ms, request) of approvals asked on this worker; None until
        # rebuilt from the chains table (after a start, a restart or a rebalance)
        self.awaiting: dict[str, tuple[int, ActionRequest]] | None = None
        self.channels = channels
        self.config = config
        self.factory_ids = factory_ids or {}
        self.links = links
        self.expiry = TableExpiry(
            table, topology.settings.partitions, lambda v: v.get("updated_at", 0) + horizon_ms
        )
        self.turns = KeyTurns()  # a chain's notices one at a time
        self.slots = asyncio.Semaphore(NOTIFY_CONCURRENCY)

    async def __call__(self, event: Any) -> None:
        """One message of the notifier's topic: a batch of notices of its partition. Each
        chain's notices are delivered in order, one at a time (also across messages in flight
        together); different chains side by side, at most ``NOTIFY_CONCURRENCY`` at once.
        A notice that raised is raised once the others have ended (the message is then
        dead-lettered; notices already delivered are in the table and not sent again)."""
        partition = event.message.partition
        by_chain: dict[str, list[ActionRequest]] = {}
        for item in notice_items(event.value):
            request = ActionRequest.from_dict(item)
            by_chain.setdefault(request.chain_id, []).append(request)
        ended = await asyncio.gather(
            *(self._chain(partition, requests) for requests in by_chain.values()),
            return_exceptions=True,
        )
        failure = next((e for e in ended if isinstance(e, BaseException)), None)
        if failure is not None:
            raise failure

    async def _chain(self, partition: int, requests: list[ActionRequest]) -> None:
        async with self.slots, self.turns.hold(requests[0].chain_id):
            for request in requests:
                await self.notify(request, partition)

    async def notify(self, request: ActionRequest, partition: int) -> None:
        clock = self.topology.clock
        table = self.expiry.table
        self.expiry.sweep(partition, clock.now_ms())
        told = before = Told.from_dict(table.get(request.chain_id))
        outbox = Outbox(self.topology)
        asks = request.step == Transition.AWAITING_APPROVAL
        if asks and self.config.approval_ttl_s and self.awaiting is not None:
            expires_ms = approval_expires_s(request, self.config.approval_ttl_s) * 1000
            self.awaiting[request.chain_id] = (expires_ms, request)
        targets = [t for t in due_targets(request, told, self.config.routes) if t in self.channels]
        if not targets:
            return  # nobody to tell (no channel routed, or told already): nothing to compose
        links = self.links(request) if self.links and asks else None
        message = compose(request, factory_ids=self.factory_ids, approval_links=links)
        for target in targets:
            channel = self.channels[target]
            try:
                ref = await channel.deliver(message, told.ref(target))
            except PlatformError as error:
                now = clock.now_ms()
                again = None
                if error.retryable:
                    again = retry_notice(
                        request,
                        target,
                        retry_after_s=error.retry_after_s,
                        now_ms=now,
                        config=self.config,
                    )
                if again is not None:
                    outbox.add_request(again, now=now)
                    row = delivery_row(
                        request,
                        target,
                        channel.kind,
                        Delivery.NOTIFY_RETRYING,
                        f"{error}; again in {(again.due_at - now) / 1000:g}s",
                        now_ms=now,
                        due_at=again.due_at,
                    )
                else:
                    log.warning("notification to %s failed for good: %s", target, error)
                    told = told.with_failure(target, request.step, str(error), now)
                    row = delivery_row(
                        request,
                        target,
                        channel.kind,
                        Delivery.NOTIFY_FAILED,
                        str(error),
                        now_ms=now,
                    )
                outbox.add_outcomes((row,))
                continue
            now = clock.now_ms()
            told = told.with_delivery(target, request.step, ref, now)
            row = delivery_row(
                request, target, channel.kind, Delivery.NOTIFIED, "delivered", now_ms=now
            )
            outbox.add_outcomes((row,))
        await outbox.flush()
        if told != before:
            table[request.chain_id] = value = told.to_dict()
            self.expiry.remember(partition, request.chain_id, value)

    async def expire_due(self) -> int:
        """Expire every approval past its time that is still undecided; returns how many.
        Run by a timer, outside any stream: it only reads the chains table and sends."""
        ttl_s = self.config.approval_ttl_s
        if not ttl_s:
            return 0
        if self.awaiting is None:
            self.awaiting = awaiting_approvals(list(self.chains.items()), ttl_s)
        now = self.topology.clock.now_ms()
        due = [cid for cid, (expires_ms, _) in self.awaiting.items() if expires_ms <= now]
        for chain_id in due:
            _, request = self.awaiting.pop(chain_id)
            await self.expire(request)
        return len(due)

    def forget_awaiting(self) -> None:
        """After a rebalance the chains this worker owns change: rebuild on the next tick."""
        self.awaiting = None

    async def expire(self, request: ActionRequest) -> None:
        """An approval nobody decided in time: recorded as ``expired`` and closed as a
        rejection, which hands the chain to people (they hear of it once, as an update)."""
        if not still_undecided(self.chains.get(request.chain_id), request):
            return  # decided meanwhile, or a later attempt asks anew
        now = self.topology.clock.now_ms()
        ttl_s = self.config.approval_ttl_s
        outbox = Outbox(self.topology)
        outbox.add_outcomes((expired_row(request, ttl_s, now_ms=now),))
        outbox.add_chain_event(
            ChainEvent(
                kind=ChainEventKind.REJECTED.value,
                chain_id=request.chain_id,
                dedup_key=request.dedup_key,
                at=now,
                alert=request.alert,
                classification=request.classification,
                detail=f"{EXPIRED_DETAIL} {ttl_s}s",
            )
        )
        await outbox.flush()


def register(topology: Topology, estate: Estate) -> Notifier:
    """The notifier stage. Without channels in the estate it still drains its topic (the
    chains stage sends every notice there) and tells no one."""
    from streams.adapters.http import http_client

    section = estate.notifications
    settings = topology.settings
    ca_bundle = str(settings.ca_bundle) if settings.ca_bundle else None
    channels: Mapping[str, Channel] = {}
    if section.channels:
        http = http_client(max_connections=NOTIFY_CONCURRENCY, timeout_s=15.0, ca_bundle=ca_bundle)
        channels = build_channels(section, http, 15.0)
    config = NotifyConfig(
        routes=section.routing_table(),
        retry_limit=section.retry_limit,
        backoff_s=settings.transient_backoff_s,
        approval_ttl_s=section.approval_ttl_s,
    )
    secret = settings.approval_secret.get_secret_value().encode()
    links = None
    if secret and section.approval_url:

        def links(request: ActionRequest) -> dict[str, str]:
            expires_s = approval_expires_s(request, section.approval_ttl_s)
            return approval_links(secret, section.approval_url, request.chain_id, expires_s)

    factory_ids = {
        name: f"/subscriptions/{ref.subscription_id}/resourceGroups/{ref.resource_group}"
        f"/providers/Microsoft.DataFactory/factories/{name}"
        for name, ref in estate.adf.factories.items()
    }
    notifier = Notifier(
        topology,
        topology.notices,
        channels,
        config,
        factory_ids=factory_ids,
        links=links,
        chains=topology.chains,
        horizon_ms=settings.dedup_horizon_s * 1000,
    )

    @topology.app.agent(topology.notify, name="notify", **CRASH_WORKER)
    async def notify(stream: Any) -> None:
        await run_concurrently(topology, stream, NOTIFY_CONCURRENCY, notifier)

    @topology.app.timer(interval=APPROVAL_SWEEP_S)
    async def expire_approvals() -> None:
        recovery = getattr(topology.app.tables, "recovery", None)
        if recovery is not None and not recovery.completed.is_set():
            return  # the chains table is still being restored: it would look empty
        await notifier.expire_due()

    @topology.app.on_partitions_assigned.connect
    async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        notifier.forget_awaiting()

    return notifier
