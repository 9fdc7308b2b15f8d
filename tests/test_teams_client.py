"""The Bot Connector client and the Entra token provider against the fake Bot Service: every
call validated against the Connector's OpenAPI description, tokens cached and single-flight,
429/412/502/504 retried honouring Retry-After, the token never sent to a host off the list,
Teams' per-thread rate limits kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatopsd.connectors.teams import render
from chatopsd.connectors.teams.admin import GraphChannels
from chatopsd.connectors.teams.auth import TokenProvider, TokenRefused
from chatopsd.connectors.teams.client import (
    THREAD_LIMITS,
    ConnectorClient,
    ConnectorError,
    ThreadLimiter,
    UntrustedServiceUrl,
)
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.errors import RateLimitedSend, TransientSendError
from chatopsd.core.messages import Button, Reply
from chatopsd.core.ports import SystemClock
from tests.conftest import FakeClock
from tests.fakes import teams_bot
from tests.fakes.teams_bot import FakeBotService
from tests.teams_helpers import TENANT, section


class Rig:
    """A client whose waits are recorded (and advance a fake clock), not slept."""

    def __init__(self, bot: FakeBotService, **cfg: Any) -> None:
        self.clock = FakeClock()
        self.waits: list[float] = []
        self.cfg = section(**bot.section(**cfg))
        self.tokens = TokenProvider(self.cfg, self.cfg.bot_scope, clock=SystemClock())
        self.client = ConnectorClient(
            self.tokens,
            service_url_hosts=self.cfg.service_url_hosts,
            clock=self.clock,
            sleep=self.sleep,
        )

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)

    async def close(self) -> None:
        await self.client.close()
        await self.tokens.close()


@pytest.fixture
async def rig(bot: FakeBotService) -> AsyncIterator[Rig]:
    r = Rig(bot)
    yield r
    await r.close()


CONV = f"{teams_bot.CHANNEL};messageid=1700000000001"


async def test_every_call_against_the_spec(bot: FakeBotService, rig: Rig) -> None:
    url = bot.service_url
    sent = await rig.client.send(url, CONV, render.render(Reply(text="hello <at>x</at>")))
    replied = await rig.client.reply(url, CONV, "1700000000001", render.render(Reply(text="re")))
    await rig.client.update(
        url, CONV, str(sent), render.render(Reply(text="card", buttons=(Button("Ack", "ic ack"),)))
    )
    await rig.client.delete(url, CONV, str(replied))
    await rig.client.typing(url, CONV)
    thread = await rig.client.create_conversation(
        url,
        tenant_id=TENANT,
        bot_id=teams_bot.BOT_ID,
        channel=teams_bot.CHANNEL,
        activity=render.render(Reply(title="SEV-2", text="database slow")),
    )
    dm = await rig.client.create_conversation(
        url, tenant_id=TENANT, bot_id=teams_bot.BOT_ID, member=teams_bot.USER_ID
    )
    assert sent and replied and thread.activity_id and dm.activity_id is None
    assert thread.conversation_id == f"{teams_bot.CHANNEL};messageid={thread.activity_id}"
    assert dm.conversation_id.startswith("a:1dm-") and dm.service_url == bot.service_url
    kinds = [(m, cid) for m, cid, _aid, _b in bot.activities]
    assert kinds == [
        ("SEND", CONV),
        ("REPLY", CONV),
        ("UPDATE", CONV),
        ("DELETE", CONV),
        ("SEND", CONV),
        ("CREATE", thread.conversation_id),
    ]
    assert bot.activities[4][3] == {"type": "typing"}
    assert bot.activities[1][3]["replyToId"] == "1700000000001"
    # The conversation id reached the server whole (quoted once, not twice).
    assert all(cid == CONV for _m, cid, _a, _b in bot.activities[:5])
    # One token for all of it, from our own tenant's authority, for the Bot Framework scope.
    assert len(bot.token_requests) == 1
    form = bot.token_requests[0]
    assert form["scope"] == "https://api.botframework.com/.default"
    assert form["grant_type"] == "client_credentials"
    assert [p for _m, _h, p, _a in bot.requests if "oauth2" in p] == [
        f"/{TENANT}/oauth2/v2.0/token"
    ]


async def test_token_single_flight_and_expiry(bot: FakeBotService) -> None:
    clock = FakeClock()
    tokens = TokenProvider(
        section(**bot.section()), "https://api.botframework.com/.default", clock=clock
    )
    try:
        got = await asyncio.gather(*(tokens.token() for _ in range(10)))
        assert len(set(got)) == 1 and len(bot.token_requests) == 1
        clock.advance(3599 - 301)  # still inside the 5-minute margin
        assert await tokens.token() == got[0] and len(bot.token_requests) == 1
        clock.advance(2)
        assert await tokens.token() != got[0] and len(bot.token_requests) == 2
    finally:
        await tokens.close()


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"app_password": "not-the-secret"}, "AADSTS7000215"),
        ({"tenant_id": "botframework.com"}, "AADSTS700016"),
        ({"tenant_id": "99999999-0000-4000-8000-000000000000"}, "AADSTS90002"),
    ],
)
async def test_refused_credentials_say_what_to_fix(
    bot: FakeBotService, overrides: dict[str, str], words: str
) -> None:
    cfg = section(**bot.section(**overrides))
    tokens = TokenProvider(cfg, cfg.bot_scope, clock=SystemClock())
    try:
        with pytest.raises(TokenRefused) as refused:
            await tokens.token()
    finally:
        await tokens.close()
    assert words in str(refused.value)
    assert "not-the-secret" not in str(refused.value)


@pytest.mark.parametrize("status", [429, 412, 502, 504])
async def test_retried_statuses_honour_retry_after(
    bot: FakeBotService, rig: Rig, status: int
) -> None:
    bot.faults = [(status, {"Retry-After": "2"})]
    assert await rig.client.send(bot.service_url, CONV, {"type": "message", "text": "x"})
    assert rig.waits == [2.0]
    assert len([a for a in bot.activities if a[0] == "SEND"]) == 1


async def test_retries_are_bounded(bot: FakeBotService, rig: Rig) -> None:
    bot.faults = [(502, {})] * 6
    with pytest.raises(TransientSendError):
        await rig.client.send(bot.service_url, CONV, {"type": "message", "text": "x"})
    assert len(rig.waits) == 3 and all(0 <= w <= 30 for w in rig.waits)  # 4 attempts
    assert len(bot.faults) == 2


async def test_a_longer_wait_than_allowed_goes_back_to_the_caller(
    bot: FakeBotService, rig: Rig
) -> None:
    bot.faults = [(429, {"Retry-After": "120"})]
    with pytest.raises(RateLimitedSend) as limited:
        await rig.client.send(bot.service_url, CONV, {"type": "message", "text": "x"})
    assert limited.value.retry_after == 120 and rig.waits == []


async def test_a_revoked_token_is_replaced_once(bot: FakeBotService, rig: Rig) -> None:
    await rig.tokens.token()
    bot.faults = [(401, {})]
    assert await rig.client.send(bot.service_url, CONV, {"type": "message", "text": "x"})
    assert len(bot.token_requests) == 2


async def test_message_too_big_is_a_connector_error(bot: FakeBotService, rig: Rig) -> None:
    huge = {"type": "message", "text": "é" * 60_000}  # 120 KB as UTF-16
    with pytest.raises(ConnectorError) as refused:
        await rig.client.send(bot.service_url, CONV, huge)
    assert refused.value.status == 413 and refused.value.code == "MessageSizeTooBig"
    # What render makes of the same text fits.
    fitted = render.render(Reply(text="é" * 60_000))
    assert await rig.client.send(bot.service_url, CONV, fitted)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/amer/{tenant}/",  # loopback, but not a listed host
        "https://smba.trafficmanager.net.evil.example/amer/",
        "http://smba.trafficmanager.net/amer/",  # listed, but not https
        "https://127.0.0.1:{port}/amer/?x=1",
    ],
)
async def test_the_token_never_goes_to_a_host_off_the_list(bot: FakeBotService, url: str) -> None:
    rig = Rig(bot, service_url_hosts=["127.0.0.1", "smba.trafficmanager.net"])
    port = bot.url.rsplit(":", 1)[1]
    target = url.format(port=port, tenant=TENANT)
    try:
        with pytest.raises(UntrustedServiceUrl) as refused:
            await rig.client.send(target, CONV, {"type": "message", "text": "x"})
        with pytest.raises(UntrustedServiceUrl):
            await rig.client.create_conversation(
                target, tenant_id=TENANT, bot_id=teams_bot.BOT_ID, member=teams_bot.USER_ID
            )
    finally:
        await rig.close()
    assert "service_url_hosts" in str(refused.value)
    assert bot.requests == []  # not even the token was fetched


def test_thread_limiter_keeps_every_window() -> None:
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    limiter = ThreadLimiter(clock, sleep)
    times = [limiter.reserve("t") for _ in range(100)]
    for count, seconds in THREAD_LIMITS:
        for i, start in enumerate(times):
            inside = [t for t in times[i:] if t < start + seconds]
            assert len(inside) <= count, (count, seconds, i)
    assert times[:7] == [1000.0] * 7  # a burst of 7 goes at once
    assert times[7] == 1001.0 and times[8] == 1002.0
    # Another thread is not held up by this one.
    assert limiter.reserve("other") == clock.monotonic()


async def test_a_burst_of_twenty_to_one_thread_is_spaced(bot: FakeBotService, rig: Rig) -> None:
    start = rig.clock.monotonic()
    sent: list[float] = []
    for i in range(20):
        await rig.client.send(bot.service_url, CONV, {"type": "message", "text": str(i)})
        sent.append(rig.clock.monotonic() - start)
    for i, t in enumerate(sent):
        assert len([u for u in sent[i:] if u < t + 1]) <= 7
        assert len([u for u in sent[i:] if u < t + 2]) <= 8
    assert sent[-1] >= 4.0  # 20 posts at 8 per 2 s: the last in the third window
    assert len(bot.activities) == 20


async def test_graph_channel_with_a_graph_token(bot: FakeBotService) -> None:
    cfg = section(**bot.section())
    tokens = TokenProvider(cfg, cfg.graph_scope, clock=SystemClock())
    graph = GraphChannels(tokens, cfg.graph_url, clock=SystemClock())
    try:
        name = "SEV-1 payments: card authorisations failing in eu-west since 14:02\nreally"
        channel = await graph.create_channel(teams_bot.TEAM_ID, name, "incident 42")
        assert channel.startswith("19:") and channel.endswith("@thread.tacv2")
        (made,) = bot.channels
        assert made["team"] == teams_bot.TEAM_ID and made["membershipType"] == "standard"
        assert len(made["displayName"]) == 50 and made["displayName"].endswith("…")
        assert "\n" not in made["displayName"]
        assert [r["scope"] for r in bot.token_requests] == ["https://graph.microsoft.com/.default"]
        bot.refuse_channels = True
        with pytest.raises(ChannelRefused) as refused:
            await graph.create_channel(teams_bot.TEAM_ID, "incident 43")
        assert "Channel.Create.Group" in str(refused.value)
    finally:
        await graph.close()
        await tokens.close()


async def test_a_bot_framework_token_does_not_open_graph(bot: FakeBotService) -> None:
    cfg = section(**bot.section())
    tokens = TokenProvider(cfg, cfg.bot_scope, clock=SystemClock())  # the wrong audience
    graph = GraphChannels(tokens, cfg.graph_url, clock=SystemClock())
    try:
        with pytest.raises(ChannelRefused) as refused:
            await graph.create_channel(teams_bot.TEAM_ID, "incident 44")
        assert "HTTP 401" in str(refused.value) and bot.channels == []
    finally:
        await graph.close()
        await tokens.close()
