"""The daemon with `[teams]`, end to end over loopback: the fake Teams channel signs and POSTs
activities to the fake Relay, the daemon's listener hands them through the Teams connector to
the real bus, and the answers go to the fake Bot Connector, which validates every request and
response against botframework-channel.openapi3.json (openapi-core)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.connectors.base import State
from chatopsd.connectors.teams import render
from chatopsd.connectors.teams.inbound import WORKING
from chatopsd.core.capabilities import DIRECT_MESSAGES, INCIDENT_CHANNELS, ChannelRefused
from chatopsd.core.messages import Destination, Reply
from chatopsd.core.ports import SystemClock
from tests.conftest import make_config
from tests.fakes import teams_bot
from tests.fakes.teams_bot import FakeBotService
from tests.fakes.teams_relay import FakeRelay
from tests.teams_helpers import raw_section
from tests.waiting import eventually

Json = dict[str, Any]


def teams_config(tmp_path: Path, relay: FakeRelay, bot: FakeBotService, **overrides: Any) -> Any:
    section = raw_section(relay.listen_url, bot.section(), **overrides)
    return make_config(tmp_path, teams=section, console={"enabled": False})


@pytest.fixture
async def start(
    tmp_path: Path, relay: FakeRelay, bot: FakeBotService
) -> AsyncIterator[Callable[..., Any]]:
    """Start a daemon (tokens are signed with the wall clock: the daemon reads it too)."""
    apps: list[App] = []

    async def make(**overrides: Any) -> App:
        app = App(teams_config(tmp_path, relay, bot, **overrides), clock=SystemClock())
        await app.start()
        apps.append(app)
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 10)
        return app

    yield make
    for app in apps:
        if not app.stopping.is_set():
            await app.stop()


def posts(bot: FakeBotService, kind: str | None = None) -> list[tuple[str, str, str, Any]]:
    return [a for a in bot.activities if kind is None or a[0] == kind]


def text_of(activity: Json) -> str:
    if "text" in activity:
        return str(activity["text"])
    return json.dumps(activity.get("attachments"))


async def test_help_by_mention_and_ic_by_prefix_are_answered_in_their_threads(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    await start()
    mention = bot.activity("<at>chatopsd</at> help")
    status, headers, body = await bot.post_activity(relay.endpoint, mention)
    assert (status, body) == (200, b"") and "Via" in headers
    thread = f"{teams_bot.CHANNEL};messageid={mention['id']}"
    await eventually(lambda: any(p[1] == thread for p in posts(bot, "SEND")), timeout=10)
    (answer,) = [p for p in posts(bot, "SEND") if p[1] == thread]
    assert "ic" in text_of(answer[3]) and "help" in text_of(answer[3])
    prefixed = bot.activity("!ic", entities=[])
    status, *_ = await bot.post_activity(relay.endpoint, prefixed)
    assert status == 200
    thread = f"{teams_bot.CHANNEL};messageid={prefixed['id']}"
    await eventually(lambda: any(p[1] == thread for p in posts(bot, "SEND")), timeout=10)
    # every Connector call carried a Bot Connector token from the bot's own tenant
    assert bot.token_requests and all(
        r["scope"] == "https://api.botframework.com/.default" for r in bot.token_requests
    )


async def test_a_redelivered_activity_is_answered_once(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    await start()
    activity = bot.activity("<at>chatopsd</at> help")
    for _ in range(2):
        status, *_ = await bot.post_activity(relay.endpoint, activity)
        assert status == 200
    await eventually(lambda: posts(bot, "SEND"), timeout=10)
    await asyncio.sleep(0.3)
    assert len(posts(bot, "SEND")) == 1


async def test_an_action_submit_button_runs_its_command(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    await start()
    click = bot.activity(
        None,  # type: ignore[arg-type]
        entities=None,
        replyToId="1700000000042",
        value={render.BUTTON_KEY: "help"},
    )
    status, *_ = await bot.post_activity(relay.endpoint, click)
    assert status == 200
    await eventually(lambda: posts(bot, "SEND"), timeout=10)
    assert "help" in text_of(posts(bot, "SEND")[0][3])


def invoke(bot: FakeBotService, command: str) -> Json:
    return bot.activity(
        type="invoke",
        name="adaptiveCard/action",
        text=None,
        entities=None,
        textFormat=None,
        replyToId="1700000000042",
        value={
            "action": {
                "type": "Action.Execute",
                "verb": render.VERB,
                "data": {render.BUTTON_KEY: command},
            },
            "trigger": "manual",
        },
    )


async def test_an_execute_button_is_answered_within_the_deadline(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    await start()
    loop = asyncio.get_running_loop()
    began = loop.time()
    status, _headers, body = await bot.post_activity(relay.endpoint, invoke(bot, "help"))
    took = loop.time() - began
    assert status == 200 and took < 4.0
    answer = json.loads(body)
    assert answer["statusCode"] == 200 and answer["type"] == render.MESSAGE
    assert answer["value"] not in (WORKING, "") and "Working" not in answer["value"]
    # the full answer is in the thread as for any command
    await eventually(lambda: posts(bot, "SEND"), timeout=10)
    assert answer["value"] in text_of(posts(bot, "SEND")[0][3]) and not posts(bot, "UPDATE")


async def test_a_slow_button_gets_working_on_it_then_the_card_is_updated(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    # a deadline shorter than recording the claim and posting the answer: always late
    await start(invoke_deadline_seconds=0.001)
    status, _headers, body = await bot.post_activity(relay.endpoint, invoke(bot, "help"))
    assert status == 200
    assert json.loads(body) == render.invoke_message(WORKING)
    await eventually(lambda: posts(bot, "UPDATE"), timeout=10)
    (update,) = posts(bot, "UPDATE")
    assert update[2] == "1700000000042"  # the card the button was on
    card = update[3]["attachments"][0]["content"]
    assert "actions" not in card  # its buttons are gone: no second click
    assert card["body"] and card["body"][0]["text"] != WORKING


async def test_proactive_posts_and_dms_survive_a_restart(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    app = await start()
    status, *_ = await bot.post_activity(relay.endpoint, bot.activity("hello team"))
    assert status == 200  # not a command: nothing answered, but the channel is now known
    personal = bot.activity(
        "hi",
        entities=[],
        conversation={
            "conversationType": "personal",
            "tenantId": teams_bot.TENANT,
            "id": "a:1personal-chat-with-alice",
        },
        channelData={"tenant": {"id": teams_bot.TENANT}},
    )
    status, *_ = await bot.post_activity(relay.endpoint, personal)
    assert status == 200
    await app.stop()
    await relay.wait_for(lambda: not relay.listeners)
    # only the 1:1 chat was answered ("hi" there is for the bot); the channel chat was not
    assert [(p[0], p[1]) for p in bot.activities] == [("SEND", "a:1personal-chat-with-alice")]
    bot.activities.clear()

    again = await start()
    sent = await again.outbox.send(Destination("teams", teams_bot.CHANNEL), Reply(text="SEV-2"))
    assert sent is not None
    (create,) = bot.conversations
    assert create["channelData"]["channel"]["id"] == teams_bot.CHANNEL and create["isGroup"]
    assert "SEV" in create["activity"]["text"]
    # a thread started by the bot: a reply to its post goes into that thread
    await again.outbox.send(sent.destination, Reply(text="update", thread=sent.message_id))
    thread = f"{teams_bot.CHANNEL};messageid={sent.message_id}"
    await eventually(lambda: any(p[1] == thread for p in posts(bot, "SEND")), timeout=10)
    dms = again.capabilities.get("teams", DIRECT_MESSAGES)
    assert dms is not None
    dm = await dms.dm_channel(teams_bot.USER_AAD)
    assert dm == "a:1personal-chat-with-alice"  # the known 1:1 chat, no new conversation
    await again.outbox.send(Destination("teams", dm), Reply(text="your shift starts"))
    assert any(p[1] == dm for p in posts(bot, "SEND"))
    assert len(bot.conversations) == 1


async def test_a_dm_to_someone_never_met_creates_the_chat_once(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    app = await start(service_url=bot.service_url)
    dms = app.capabilities.get("teams", DIRECT_MESSAGES)
    assert dms is not None
    first = await dms.dm_channel("29:1someone-new")
    assert await dms.dm_channel("29:1someone-new") == first
    (create,) = bot.conversations
    assert create["members"] == [{"id": "29:1someone-new"}] and not create["isGroup"]
    await app.outbox.send(Destination("teams", first), Reply(text="hello"))
    assert posts(bot, "SEND")[0][1] == first


async def test_a_post_where_the_bot_never_was_fails_truthfully(
    start: Callable[..., Any], bot: FakeBotService
) -> None:
    app = await start()
    sent = await app.outbox.send(Destination("teams", "19:unknown@thread.tacv2"), Reply(text="x"))
    assert sent is None and app.outbox.failed == 1
    assert bot.activities == [] and bot.conversations == []


def with_group(bot: FakeBotService, text: str) -> Json:
    activity = bot.activity(text)
    activity["channelData"]["team"]["aadGroupId"] = "0a0a0a0a-1111-4222-8333-444444444444"
    return activity


async def test_an_incident_channel_is_made_through_graph_and_posted_to(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    app = await start()
    channels = app.capabilities.get("teams", INCIDENT_CHANNELS)
    assert channels is not None
    with pytest.raises(ChannelRefused, match="no Teams team known"):
        await channels.create_channel("inc-1", "before any activity")
    status, *_ = await bot.post_activity(relay.endpoint, with_group(bot, "hello"))
    assert status == 200
    name = "inc-42 " + "database primary unreachable in eu-west " * 3
    channel = await channels.create_channel(name, "SEV-1")
    (made,) = bot.channels
    assert made["team"] == "0a0a0a0a-1111-4222-8333-444444444444"
    assert len(made["displayName"]) <= 50 and made["id"] == channel
    # a Graph token, not the Bot Connector's
    assert {r["scope"] for r in bot.token_requests} >= {"https://graph.microsoft.com/.default"}
    sent = await app.outbox.send(Destination("teams", channel), Reply(text="SEV-1 declared"))
    assert sent is not None
    (create,) = bot.conversations
    assert create["channelData"]["channel"]["id"] == channel


async def test_a_refused_incident_channel_says_why(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    app = await start()
    status, *_ = await bot.post_activity(relay.endpoint, with_group(bot, "hello"))
    assert status == 200
    bot.refuse_channels = True
    channels = app.capabilities.get("teams", INCIDENT_CHANNELS)
    assert channels is not None
    with pytest.raises(ChannelRefused, match=r"Channel\.Create\.Group"):
        await channels.create_channel("inc-43", "SEV-2")
    assert bot.channels == []


async def test_a_private_answer_goes_to_the_persons_chat_when_there_is_one(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    app = await start()
    for activity in (
        bot.activity("hello team"),
        bot.activity(
            "hello",
            entities=[],
            conversation={"conversationType": "personal", "id": "a:1chat-alice"},
            channelData={"tenant": {"id": teams_bot.TENANT}},
        ),
    ):
        status, *_ = await bot.post_activity(relay.endpoint, activity)
        assert status == 200
    await eventually(lambda: posts(bot, "SEND"), timeout=10)  # "hello" in the 1:1 chat is answered
    bot.activities.clear()
    where = Destination("teams", teams_bot.CHANNEL, actor=teams_bot.USER_AAD, reply_to="7")
    await app.outbox.send(where, Reply(text="only you", ephemeral=True))
    assert [p[1] for p in posts(bot, "SEND")] == ["a:1chat-alice"]
    stranger = Destination("teams", teams_bot.CHANNEL, actor="aad-of-someone-else", reply_to="7")
    await app.outbox.send(stranger, Reply(text="no chat with them", ephemeral=True))
    assert posts(bot, "SEND")[-1][1] == f"{teams_bot.CHANNEL};messageid=7"


async def test_a_dropped_relay_connection_shows_in_health_and_comes_back(
    start: Callable[..., Any], relay: FakeRelay, bot: FakeBotService
) -> None:
    app = await start()
    supervisor = app.supervisors[0]
    assert supervisor.health.state is State.READY
    relay.drop()
    await eventually(lambda: supervisor.health.state is not State.READY, timeout=10)
    await eventually(lambda: supervisor.health.state is State.READY and relay.listeners, timeout=10)
    assert supervisor.health.connects == 2
    status, *_ = await bot.post_activity(relay.endpoint, bot.activity("<at>chatopsd</at> help"))
    assert status == 200
    await eventually(lambda: posts(bot, "SEND"), timeout=10)


async def test_a_wrong_relay_key_fails_the_connector_once_with_the_reason(
    tmp_path: Path, relay: FakeRelay, bot: FakeBotService
) -> None:
    cfg = teams_config(tmp_path, relay, bot, relay_key="d3Jvbmcta2V5")
    app = App(cfg, clock=SystemClock())
    await app.start()
    try:
        supervisor = app.supervisors[0]
        await eventually(lambda: supervisor.health.state is State.FAILED, timeout=10)
        assert "teams_relay_key" in supervisor.health.reason
        await asyncio.sleep(0.3)
        assert len(relay.refused) == 1  # no retry: a key no retry fixes
    finally:
        await app.stop()
