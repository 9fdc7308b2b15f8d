"""The Discord connector through the real App and real discord.py, against tests/fakes/discord."""

from __future__ import annotations

import asyncio
import io
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatopsd.app import App, Io
from chatopsd.connectors.base import State, Supervisor
from chatopsd.connectors.discord.client import DiscordConnector
from chatopsd.core.errors import TransientSendError
from chatopsd.core.messages import Destination, Reply
from tests.conftest import FakeClock
from tests.fakes.discord import BOT_ID, CHANNEL_ID, GUILD_ID, TOKEN, FakeDiscord, Recorded
from tests.fakes.discord import zstandard as _zstd
from tests.fixtures.discord import (
    discord_config,
    fake,  # noqa: F401 (fixtures)
    text_of,
)
from tests.waiting import eventually


async def start_app(tmp_path: Path, fake: FakeDiscord, clock: FakeClock, **extra: Any) -> App:
    app = App(
        discord_config(tmp_path, fake, **extra), clock=clock, io=Io(io.StringIO(""), io.StringIO())
    )
    await app.start()
    return app


def supervisor(app: App) -> Supervisor:
    return app.supervisors[0]


@pytest.fixture
async def app(tmp_path: Path, fake: FakeDiscord, clock: FakeClock) -> AsyncIterator[App]:
    application = await start_app(tmp_path, fake, clock)
    await asyncio.wait_for(supervisor(application).ready_event.wait(), 5)
    yield application
    await application.stop()


async def next_message(fake: FakeDiscord) -> Recorded:
    """The next channel message or interaction follow-up (skipping deferrals)."""
    while True:
        rec = await fake.next_post()
        if "/callback" not in rec.path:
            return rec


async def barrier(fake: FakeDiscord) -> None:
    """Send `!help` and wait for its answer, which must be the next thing posted: whatever the
    daemon was given before it has been handled, and nothing else was said."""
    msg = fake.message("!help")
    await fake.dispatch("MESSAGE_CREATE", msg)
    rec = await fake.next_post()
    assert rec.body.get("message_reference", {}).get("message_id") == msg["id"], rec
    assert fake.posted.empty()


async def test_prefix_command_answered_with_reference(app: App, fake: FakeDiscord) -> None:
    msg = fake.message("!help")
    await fake.dispatch("MESSAGE_CREATE", msg)
    rec = await next_message(fake)
    assert rec.path == f"/channels/{CHANNEL_ID}/messages"
    assert rec.body["message_reference"]["message_id"] == msg["id"]
    assert rec.body["allowed_mentions"] == {"parse": [], "replied_user": False}
    assert "ic" in text_of(rec)
    assert rec.headers["Authorization"] == f"Bot {TOKEN}"


async def test_mention_is_a_command(app: App, fake: FakeDiscord) -> None:
    await fake.dispatch("MESSAGE_CREATE", fake.message(f"<@{BOT_ID}> help"))
    rec = await next_message(fake)
    assert "ic" in text_of(rec)


async def test_direct_message_needs_no_prefix(app: App, fake: FakeDiscord) -> None:
    dm = fake.message("help")
    del dm["guild_id"], dm["member"]  # a DM: no guild
    await fake.dispatch("MESSAGE_CREATE", dm)
    rec = await next_message(fake)
    assert "chatopsd commands" in text_of(rec)


async def test_chatter_own_and_bot_messages_ignored(app: App, fake: FakeDiscord) -> None:
    await fake.dispatch("MESSAGE_CREATE", fake.message("just chatting"))
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help", author_id=BOT_ID, bot=True))
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help", author_id=77, name="ci", bot=True))
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))  # the only one answered
    rec = await next_message(fake)
    assert rec.body["message_reference"]["message_id"]
    await barrier(fake)


async def test_unknown_command_escapes_user_text(app: App, fake: FakeDiscord) -> None:
    await fake.dispatch("MESSAGE_CREATE", fake.message("!hlp@everyone **bold**"))
    rec = await next_message(fake)
    body = text_of(rec)
    assert "@everyone" not in body  # broken up, and...
    assert rec.body["allowed_mentions"]["parse"] == []  # ...nobody may be pinged anyway


async def test_slash_command_defers_then_follows_up(app: App, fake: FakeDiscord) -> None:
    inter = fake.slash("ic", "help")
    await fake.dispatch("INTERACTION_CREATE", inter)
    defer = await fake.next_post()
    assert defer.path == f"/interactions/{inter['id']}/{inter['token']}/callback"
    assert defer.body["type"] == 5  # deferred channel message: "thinking..."
    follow = await fake.next_post()
    assert follow.path.startswith(f"/webhooks/{inter['application_id']}/{inter['token']}")
    assert follow.query.get("wait") == "true"
    assert follow.body["allowed_mentions"]["parse"] == []
    assert text_of(follow)


async def test_replayed_interaction_answered_once(app: App, fake: FakeDiscord) -> None:
    inter = fake.slash("ic", "help")
    await fake.dispatch("INTERACTION_CREATE", inter)
    await fake.next_post()  # deferral
    await fake.next_post()  # follow-up
    await fake.dispatch("INTERACTION_CREATE", inter)  # delivered again (e.g. replay)
    await eventually(lambda: sum("/callback" in r.path for r in fake.requests) == 2)
    await barrier(fake)  # the replay is acknowledged, and not answered again


async def test_app_commands_registered_once(app: App, fake: FakeDiscord) -> None:
    await eventually(lambda: fake.command_writes == 1)
    names = sorted(c["name"] for c in fake.commands[str(GUILD_ID)])
    assert names == ["ic", "incident", "status"]
    # a reconnect that needs a new session (op 9) brings a new READY: nothing is re-written
    await fake.send_op(9, False)
    await eventually(lambda: fake.identifies == 2)
    await asyncio.sleep(0.2)
    assert fake.command_writes == 1


async def test_restart_does_not_reregister(
    tmp_path: Path, fake: FakeDiscord, clock: FakeClock
) -> None:
    for _ in range(2):
        application = await start_app(tmp_path, fake, clock)
        await asyncio.wait_for(supervisor(application).ready_event.wait(), 5)
        await eventually(lambda: fake.command_writes == 1)
        await asyncio.sleep(0.1)
        await application.stop()
    assert fake.command_writes == 1
    assert sum(r.method == "GET" and r.path.endswith("/commands") for r in fake.requests) == 2


async def test_button_click(app: App, fake: FakeDiscord) -> None:
    click = fake.click("help")
    await fake.dispatch("INTERACTION_CREATE", click)
    defer = await fake.next_post()
    assert defer.body["type"] == 6  # deferred update: nothing shown until the answer
    follow = await fake.next_post()
    assert follow.path.startswith(f"/webhooks/{click['application_id']}/{click['token']}")


async def test_reaction_reaches_listeners(app: App, fake: FakeDiscord) -> None:
    seen: list[Any] = []

    async def listener(event: Any) -> None:
        seen.append(event)

    app.bus.reaction_commands.append(listener)
    await fake.dispatch("MESSAGE_REACTION_ADD", fake.reaction("👍", "12345"))
    await fake.dispatch("MESSAGE_REACTION_ADD", fake.reaction("👍", "12345", user_id=BOT_ID))
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert (event.kind, event.text, event.message_id, event.actor.id) == (
        "reaction",
        "👍",
        "12345",
        "42",
    )
    await barrier(fake)
    assert len(seen) == 1


async def test_resume_after_drop_replays_missed_event_once(app: App, fake: FakeDiscord) -> None:
    await fake.drop()
    msg = fake.message("!help")
    await fake.dispatch("MESSAGE_CREATE", msg)  # missed while down: replayed on RESUME
    await eventually(lambda: fake.resumes == 1, timeout=15)
    rec = await next_message(fake)
    assert rec.body["message_reference"]["message_id"] == msg["id"]
    assert fake.identifies == 1
    await fake.dispatch("MESSAGE_CREATE", msg)  # a second delivery of the same message
    await barrier(fake)


async def test_failed_reconnect_backs_off_then_resumes(app: App, fake: FakeDiscord) -> None:
    fake.refuse_gateway = 1  # the first reconnect attempt fails: our backoff, then RESUME
    await fake.drop()
    msg = fake.message("!help")
    await fake.dispatch("MESSAGE_CREATE", msg)
    await eventually(lambda: fake.resumes == 1, timeout=10)
    rec = await next_message(fake)
    assert rec.body["message_reference"]["message_id"] == msg["id"]
    assert (fake.refuse_gateway, fake.identifies) == (0, 1)
    health = supervisor(app).health
    assert health.failures == 0  # handled inside the connection, not a restart
    assert health.state is State.READY and health.connects == 2  # lost, then resumed


async def test_op7_reconnect_resumes(app: App, fake: FakeDiscord) -> None:
    await fake.send_op(7)
    await eventually(lambda: fake.resumes == 1)
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))
    await next_message(fake)
    assert fake.identifies == 1


async def test_op9_resumable_resumes(app: App, fake: FakeDiscord) -> None:
    await fake.send_op(9, True)
    await eventually(lambda: fake.resumes == 1)
    assert fake.identifies == 1


async def test_op9_not_resumable_identifies_again(app: App, fake: FakeDiscord) -> None:
    await fake.send_op(9, False)
    await eventually(lambda: fake.identifies == 2)
    await asyncio.sleep(0.1)
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))
    await next_message(fake)


async def test_zombie_connection_detected(
    tmp_path: Path, fake: FakeDiscord, clock: FakeClock
) -> None:
    application = await start_app(tmp_path, fake, clock, heartbeat_timeout=1.0)
    try:
        await asyncio.wait_for(supervisor(application).ready_event.wait(), 5)
        fake.ack_heartbeats = False  # the server goes silent: no ACK, nothing at all
        await eventually(lambda: fake.connections == 2, timeout=5)
        fake.ack_heartbeats = True
        await eventually(lambda: fake.resumes == 1)
    finally:
        await application.stop()


async def test_send_429_honoured(app: App, fake: FakeDiscord) -> None:
    fake.fail_next(
        "POST",
        "/messages",
        429,
        {"message": "You are being rate limited.", "retry_after": 0.2, "global": False},
        {"Via": "1.1 google", "Retry-After": "1", "X-RateLimit-Scope": "user"},
    )
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))
    await next_message(fake)
    posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert len(posts) == 2
    assert posts[0].body == posts[1].body


async def test_send_5xx_retried(app: App, fake: FakeDiscord) -> None:
    fake.fail_next("POST", "/messages", 503, {"message": "unavailable"})
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))
    await next_message(fake)
    posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert len(posts) == 2


@pytest.mark.parametrize(
    ("code", "words"),
    [(4004, "Reset Token"), (4014, "MESSAGE CONTENT INTENT"), (4013, "code 4013")],
)
async def test_fatal_close_codes(
    tmp_path: Path, fake: FakeDiscord, clock: FakeClock, code: int, words: str
) -> None:
    fake.close_after_identify = code
    application = await start_app(tmp_path, fake, clock)
    try:
        sup = supervisor(application)
        await eventually(lambda: sup.health.state is State.FAILED)
        assert words in sup.health.reason
        assert "developer portal" in sup.health.reason or code == 4013
        assert TOKEN not in sup.health.reason
        assert fake.identifies == 1
    finally:
        await application.stop()


async def test_bad_token_at_login_is_fatal(
    tmp_path: Path, fake: FakeDiscord, clock: FakeClock
) -> None:
    application = await start_app(tmp_path, fake, clock, token="not-the-token")
    try:
        sup = supervisor(application)
        await eventually(lambda: sup.health.state is State.FAILED)
        assert "Reset Token" in sup.health.reason
        assert "not-the-token" not in sup.health.reason
    finally:
        await application.stop()


async def test_malformed_payload_does_not_break_the_connection(app: App, fake: FakeDiscord) -> None:
    await fake.dispatch("MESSAGE_CREATE", {"id": "1", "channel_id": str(CHANNEL_ID)})
    await fake.dispatch("INTERACTION_CREATE", {"type": 2})
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))
    await next_message(fake)
    assert fake.connections == 1


async def test_slash_usage_error_is_ephemeral(app: App, fake: FakeDiscord) -> None:
    await fake.dispatch("INTERACTION_CREATE", fake.slash("ic", "frobnicate now"))
    await fake.next_post()  # the deferral
    follow = await fake.next_post()
    assert follow.body.get("flags") == 64


async def test_post_and_edit_outside_a_command(app: App, fake: FakeDiscord) -> None:
    where = Destination(platform="discord", channel=str(CHANNEL_ID))
    sent = await app.outbox.send(where, Reply(title="Status", fields=(("api", "NORMAL"),)))
    assert sent is not None
    post = await fake.next_post()
    assert "message_reference" not in post.body
    assert post.body["embeds"][0]["fields"][0]["value"] == "NORMAL"
    await app.outbox.edit(sent, Reply(title="Status", fields=(("api", "CRITICAL"),)))
    edit = await fake.next_post()
    assert (edit.method, edit.path) == (
        "PATCH",
        f"/channels/{CHANNEL_ID}/messages/{sent.message_id}",
    )


async def test_429_without_via_is_a_cloudflare_block(app: App, fake: FakeDiscord) -> None:
    fake.fail_next("POST", "/messages", 429, {"message": "banned", "retry_after": 0.1})
    connector = supervisor(app).connector
    with pytest.raises(TransientSendError) as info:
        await connector.send(Destination(platform="discord", channel=str(CHANNEL_ID)), Reply("x"))
    assert info.value.retry_after == 60.0


async def test_send_while_disconnected_is_transient(tmp_path: Path, clock: FakeClock) -> None:
    connector = DiscordConnector(discord_config(tmp_path, FakeDiscord()).discord)
    with pytest.raises(TransientSendError):
        await connector.send(Destination(platform="discord", channel="1"), Reply("x"))


async def test_zombie_with_traffic_but_no_acks_detected(app: App, fake: FakeDiscord) -> None:
    fake.ack_heartbeats = False  # events still arrive, so only missing ACKs give it away

    async def chatter() -> None:
        while True:
            await fake.dispatch("TYPING_START", {"channel_id": str(CHANNEL_ID), "user_id": "42"})
            await asyncio.sleep(0.05)

    task = asyncio.get_running_loop().create_task(chatter(), name="test:chatter")
    try:
        await eventually(lambda: fake.connections == 2, timeout=5)
        fake.ack_heartbeats = True
        await eventually(lambda: fake.resumes == 1)
        assert fake.identifies == 1
    finally:
        task.cancel()


async def test_commands_registered_globally_without_guild_ids(
    tmp_path: Path, fake: FakeDiscord, clock: FakeClock
) -> None:
    application = await start_app(tmp_path, fake, clock, guild_ids=[])
    try:
        await eventually(lambda: fake.command_writes == 1)
        assert sorted(c["name"] for c in fake.commands["global"]) == ["ic", "incident", "status"]
        assert str(GUILD_ID) not in fake.commands
    finally:
        await application.stop()


async def test_registration_refused_is_logged_not_fatal(
    tmp_path: Path, fake: FakeDiscord, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("GET", "/commands", 403, {"message": "Missing Access", "code": 50001})
    application = await start_app(tmp_path, fake, clock)
    try:
        await asyncio.wait_for(supervisor(application).ready_event.wait(), 5)
        await eventually(lambda: "applications.commands" in caplog.text)
        await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))
        await next_message(fake)
        assert fake.command_writes == 0
    finally:
        await application.stop()


async def test_long_429_goes_back_to_the_outbox(app: App, fake: FakeDiscord) -> None:
    fake.fail_next(
        "POST",
        "/messages",
        429,
        {"message": "You are being rate limited.", "retry_after": 45.0, "global": False},
        {"Via": "1.1 google"},
    )
    connector = supervisor(app).connector
    with pytest.raises(TransientSendError) as info:
        await connector.send(Destination(platform="discord", channel=str(CHANNEL_ID)), Reply("x"))
    assert info.value.retry_after == 45.0


async def test_follow_up_edited_through_the_interaction(app: App, fake: FakeDiscord) -> None:
    inter = fake.slash("status", "help")
    await fake.dispatch("INTERACTION_CREATE", inter)
    await fake.next_post()  # deferral
    await fake.next_post()  # the bus's answer
    connector = supervisor(app).connector
    where = Destination(platform="discord", channel=str(CHANNEL_ID), reply_to=inter["id"])
    sent = await connector.send(where, Reply("pinned status"))
    assert sent is not None and sent.extra == {"interaction": inter["id"]}
    await fake.next_post()
    await connector.edit(sent, Reply("pinned status, updated"))
    edit = await fake.next_post()
    token_path = f"/webhooks/{inter['application_id']}/{inter['token']}/messages/{sent.message_id}"
    assert (edit.method, edit.path) == ("PATCH", token_path)
    assert edit.body["content"] == "pinned status, updated"


async def test_interaction_deferred_by_another_instance_is_followed_up(
    app: App, fake: FakeDiscord
) -> None:
    # Two instances of the bot both get every interaction; the other one's callback came
    # first, so ours gets 400/40060. The answer must still go through the interaction's token
    # (ending the other instance's "thinking..."), not as a loose channel message.
    inter = fake.slash("ic", "help")
    fake.acknowledged.add(inter["id"])
    await fake.dispatch("INTERACTION_CREATE", inter)
    follow = await next_message(fake)
    assert follow.path.startswith(f"/webhooks/{inter['application_id']}/{inter['token']}")
    assert text_of(follow)
    refused = [
        r for r in fake.requests if r.path.endswith(f"{inter['id']}/{inter['token']}/callback")
    ]
    assert len(refused) == 1  # the one callback we tried, refused with 40060
    assert not any(r.path == f"/channels/{CHANNEL_ID}/messages" for r in fake.requests)


async def test_every_session_of_the_bot_gets_every_dispatch(app: App, fake: FakeDiscord) -> None:
    # A second instance of the bot (another gateway session, no sharding): Discord sends each
    # event to both. Here the second one is a bare client reading what the gateway sends.
    session = aiohttp.ClientSession()
    try:
        if _zstd is not None:
            pytest.skip("zstandard is installed: the fake speaks zstd-stream, read here as zlib")
        ws = await session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream")
        inflate = zlib.decompressobj()

        async def receive() -> dict[str, Any]:
            return dict(json.loads(inflate.decompress((await ws.receive()).data)))

        assert (await receive())["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": 0, "properties": {}}})
        assert (await receive())["t"] == "READY"
        assert (await receive())["t"] == "GUILD_CREATE"
        await eventually(lambda: fake.ready_sessions() == 2)
        msg = fake.message("!help")
        await fake.dispatch("MESSAGE_CREATE", msg)
        seen = await receive()
        assert (seen["t"], seen["d"]["id"]) == ("MESSAGE_CREATE", msg["id"])
        rec = await next_message(fake)  # and the App, on its own session, answered it
        assert rec.body["message_reference"]["message_id"] == msg["id"]
        await ws.close()
    finally:
        await session.close()
