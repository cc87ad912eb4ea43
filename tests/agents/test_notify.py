"""The notifier on a manual clock: once per chain, updates in place, retries through the
delay tiers, failures recorded; nothing sleeps."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from agents.notify import Notifier
from agents.outbox import Outbox, partition_for
from streams.adapters.errors import ErrorKind, PlatformError
from streams.codecs import Undecodable, decode_items, encode, encode_items
from streams.policy.chains import Chain
from streams.policy.model import ActionRequest, Alert, Classification, Outcome
from streams.policy.notices import NotifyConfig, Route, notices_for
from tests.agents.helpers import fake_topology

ALERT = Alert(alert_id="a1", source="adf", kind="pipeline_run", scope="f1", run_id="r1")
KIND = Classification("UserErrorSourceBlobNotExists", "high", "manual", 0, (), "never automate")


def notice(state: str, chain_id: str = "c1"):
    chain = Chain(chain_id, state, attempts=1, max_attempts=3, action="manual")
    row = Outcome(event_id="e", at=0, chain_id=chain_id, dedup_key="k", state=state, detail="why")
    (made,) = notices_for(chain, ALERT, KIND, [row])
    return made


class FakeChannel:
    kind = "fake"

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.told: list[tuple[str, str, dict]] = []

    async def deliver(self, message, ref):
        if self.failures:
            raise self.failures.pop(0)
        self.told.append((message.chain_id, message.transition, dict(ref)))
        return {"ts": f"{len(self.told)}.0", "channel": "C1"}


EVERYONE = (Route(targets=("pd", "slack")),)


def notifier(channels, routes=EVERYONE, retry_limit=5):
    topology = fake_topology(tiers=(1, 5, 30))
    table: dict = {}
    config = NotifyConfig(routes=routes, retry_limit=retry_limit, backoff_s=(1.0, 5.0))
    return Notifier(topology, table, channels, config), topology, table


def rows(topology) -> list[dict]:
    return [o for _, v, _ in topology.outcomes.sent for o in decode_items("outcome", v)]


async def test_a_chain_is_told_once_whatever_is_redelivered_then_updated_in_place():
    pd, slack = FakeChannel(), FakeChannel()
    stage, topology, table = notifier({"pd": pd, "slack": slack})
    for _ in range(50):
        await stage.notify(notice("manual"), 0)
    assert pd.told == [("c1", "handed_to_people", {})]
    assert slack.told == [("c1", "handed_to_people", {})]
    await stage.notify(notice("resolved"), 0)
    assert slack.told[-1] == ("c1", "resolved", {"ts": "1.0", "channel": "C1"})
    assert [r["state"] for r in rows(topology)] == ["notified"] * 4
    assert {(r["action"], r["platform_status"]) for r in rows(topology)} == {
        ("notify:pd", "handed_to_people"),
        ("notify:slack", "handed_to_people"),
        ("notify:pd", "resolved"),
        ("notify:slack", "resolved"),
    }


async def test_a_resolution_without_a_hand_off_tells_no_one():
    pd = FakeChannel()
    stage, topology, _ = notifier({"pd": pd, "slack": FakeChannel()})
    await stage.notify(notice("resolved"), 0)
    assert pd.told == [] and rows(topology) == []


async def test_a_channel_that_is_down_retries_through_a_tier_honouring_retry_after():
    down = PlatformError(ErrorKind.THROTTLED, "pd: HTTP 429", retry_after_s=5.0)
    pd, slack = FakeChannel([down]), FakeChannel()
    stage, topology, _ = notifier({"pd": pd, "slack": slack})
    await stage.notify(notice("manual"), 0)
    assert slack.told and not pd.told  # the other channel is not held up
    ((_, batch, _),) = topology.delays[5].sent
    (retry,) = decode_items("action_request", batch)
    assert retry["context"]["target"] == "pd" and retry["tier"] == "5s"
    assert [r["state"] for r in rows(topology)] == ["notify_retrying", "notified"]
    # the tier hands it back (to the notifications topic); now it goes to pd alone
    await stage.notify(ActionRequest.from_dict(retry), 0)
    assert pd.told == [("c1", "handed_to_people", {})] and len(slack.told) == 1


async def test_a_permanent_failure_is_recorded_and_retried_never():
    bad = PlatformError(ErrorKind.BAD_REQUEST, "pd: HTTP 400 invalid event")
    pd = FakeChannel([bad])
    stage, topology, table = notifier({"pd": pd}, routes=(Route(targets=("pd",)),))
    await stage.notify(notice("manual"), 0)
    assert [r["state"] for r in rows(topology)] == ["notify_failed"]
    assert not any(t.sent for t in topology.delays.values())
    assert "invalid event" in table["c1"]["targets"]["pd"]["failed"]["handed_to_people"]


async def test_retries_stop_at_the_limit():
    down = [PlatformError(ErrorKind.TRANSIENT, "HTTP 503")] * 3
    stage, topology, _ = notifier({"pd": FakeChannel(down)}, (Route(targets=("pd",)),), 2)
    await stage.notify(notice("manual"), 0)
    ((_, batch, _),) = topology.delays[1].sent
    (retry,) = decode_items("action_request", batch)
    await stage.notify(ActionRequest.from_dict(retry), 0)
    assert [r["state"] for r in rows(topology)] == ["notify_retrying", "notify_failed"]


async def test_notices_due_now_go_to_the_notifications_topic_one_batch_per_partition():
    topology = fake_topology()
    outbox = Outbox(topology)
    chains = [f"c{n}" for n in range(40)]
    for chain_id in chains:
        outbox.add_request(notice("manual", chain_id), now=0)
    await outbox.flush()
    sent = topology.notify.sent
    assert len(sent) == len({partition_for(c, topology.settings.partitions) for c in chains})
    told = []
    for key, value, partition in sent:
        items = decode_items("action_request", value)
        assert {partition_for(i["chain_id"], topology.settings.partitions) for i in items} == {
            partition
        }
        assert key == items[0]["chain_id"]
        told += [i["chain_id"] for i in items if i["step"] == "handed_to_people"]
    assert sorted(told) == sorted(chains)


class SlowChannel(FakeChannel):
    """Delivers when released; records how many deliveries were in flight at once."""

    def __init__(self):
        super().__init__()
        self.release = asyncio.Event()
        self.in_flight = self.most = 0

    async def deliver(self, message, ref):
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return await super().deliver(message, ref)


def batch_event(requests, partition=0):
    body = encode_items("action_request", [r.to_dict() for r in requests])
    message = SimpleNamespace(partition=partition, key=requests[0].chain_id.encode())
    return SimpleNamespace(value=body, message=message)


async def test_a_batch_tells_different_chains_side_by_side_and_one_chain_in_order():
    slow = SlowChannel()
    stage, _, table = notifier({"pd": slow}, routes=(Route(targets=("pd",)),))
    batch = [notice("manual", "c1"), notice("manual", "c2"), notice("resolved", "c1")]
    handling = asyncio.create_task(stage(batch_event(batch)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert slow.in_flight == 2  # c1 and c2 at once; c1's update waits for its first notice
    slow.release.set()
    await handling
    assert slow.told == [
        ("c1", "handed_to_people", {}),
        ("c2", "handed_to_people", {}),
        ("c1", "resolved", {"ts": "1.0", "channel": "C1"}),  # the same message, updated
    ]
    assert set(table) == {"c1", "c2"}


async def test_one_chain_in_two_batches_in_flight_together_is_told_once():
    slow = SlowChannel()
    stage, _, _ = notifier({"pd": slow}, routes=(Route(targets=("pd",)),))
    first = asyncio.create_task(stage(batch_event([notice("manual", "c1")])))
    again = asyncio.create_task(stage(batch_event([notice("manual", "c2"), notice("manual")])))
    for _ in range(20):
        await asyncio.sleep(0)
    assert slow.most == 2  # c1 once, c2 beside it; the copy of c1 waits its turn
    slow.release.set()
    await asyncio.gather(first, again)
    assert sorted(c for c, _, _ in slow.told) == ["c1", "c2"]


async def test_a_single_notice_as_older_versions_sent_it_is_still_told():
    pd = FakeChannel()
    stage, _, _ = notifier({"pd": pd}, routes=(Route(targets=("pd",)),))
    message = SimpleNamespace(partition=0, key=b"c1")
    lone = encode("action_request", notice("manual").to_dict())
    await stage(SimpleNamespace(value=lone, message=message))
    assert pd.told == [("c1", "handed_to_people", {})]
    with pytest.raises(Undecodable):
        await stage(SimpleNamespace(value=b"\x02garbage", message=message))


async def test_an_undecided_approval_expires_once_and_a_decided_one_never():
    from streams.policy.chains import Chain as ChainRecord

    asked = notice("awaiting_approval")
    stage, topology, _ = notifier({"pd": FakeChannel(), "slack": FakeChannel()})
    stage.config = NotifyConfig(routes=EVERYONE, approval_ttl_s=60)
    clock = topology.clock
    asked = asked.__class__.from_dict({**asked.to_dict(), "due_at": clock.now_ms()})
    waiting = ChainRecord("c1", "awaiting_approval", attempts=1, updated_at=clock.now_ms())
    stage.chains = {"c1": {**waiting.to_dict(), "pending": asked.to_dict()}}
    assert await stage.expire_due() == 0  # rebuilt from the table: not due yet
    await clock.advance(61)
    assert await stage.expire_due() == 1
    assert await stage.expire_due() == 0  # once
    ((_, batch, _),) = topology.chain_events.sent
    (event,) = decode_items("chain_event", batch)
    assert (event["kind"], event["detail"]) == ("rejected", "expired: no decision within 60s")
    assert [r["state"] for r in rows(topology)] == ["expired"]
    # a chain decided before its time is left alone
    stage.awaiting = None
    stage.chains = {"c1": {**waiting.to_dict(), "state": "scheduled", "pending": None}}
    await clock.advance(600)
    assert await stage.expire_due() == 0
