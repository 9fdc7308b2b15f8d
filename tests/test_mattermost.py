"""The Mattermost connector through the real App, against the fake server (aiohttp both ends)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from chatopsd.app import App
from chatopsd.connectors.base import State
from chatopsd.connectors.mattermost.render import escape
from chatopsd.core.messages import Inbound
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import BOT, CHANNEL, TOKEN, FakeMattermost
from tests.fixtures.mattermost import (
    server,  # noqa: F401 (fixtures)
)
from tests.waiting import eventually


def mm_config(tmp_path: Path, url: str, **extra: Any) -> Any:
    section = {"url": url, "token": TOKEN, "heartbeat_seconds": 1.0, **extra}
    return make_config(tmp_path, mattermost=section, console={"enabled": False})


async def start_app(config: Any, clock: FakeClock) -> App:
    app = App(config, clock=clock)
    await app.start()
    return app


@pytest.fixture
async def app(server: FakeMattermost, tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    application = await start_app(mm_config(tmp_path, server.url), clock)
    await asyncio.wait_for(application.supervisors[0].ready_event.wait(), 5)
    yield application
    await application.stop()


def replies(server: FakeMattermost) -> list[dict[str, Any]]:
    return server.bot_posts()


async def barrier(server: FakeMattermost) -> list[dict[str, Any]]:
    """Post `!help` and wait for its answer: whatever came before it has been handled. The
    bot's posts other than that answer."""
    post = await server.user_post("!help")
    await eventually(lambda: [p for p in server.bot_posts() if p["root_id"] == post["id"]])
    return [p for p in server.bot_posts() if p["root_id"] != post["id"]]


async def test_command_answered_in_thread(server: FakeMattermost, app: App) -> None:
    post = await server.user_post("!help")
    await eventually(lambda: replies(server))
    reply = replies(server)[0]
    assert reply["root_id"] == post["id"] and reply["channel_id"] == CHANNEL
    assert "help" in reply["message"]
    # our own post came back over the websocket: not answered
    assert len(await barrier(server)) == 1


async def test_thread_reply_keeps_root(server: FakeMattermost, app: App) -> None:
    root = await server.user_post("incident chatter")
    await server.user_post("!help", root_id=root["id"])
    await eventually(lambda: replies(server))
    assert replies(server)[0]["root_id"] == root["id"]


async def test_mention(server: FakeMattermost, app: App) -> None:
    await server.user_post("@chatopsd help")
    await eventually(lambda: replies(server))
    assert "help" in replies(server)[0]["message"]


async def test_bot_posts_ignored(server: FakeMattermost, app: App) -> None:
    await server.user_post(
        "!help",
        user={"id": "otherbot0000000000000000aa", "username": "b"},
        props={"from_bot": "true"},
    )
    own = await server.user_post("!help", user=BOT)
    assert [p["id"] for p in await barrier(server)] == [own["id"]]  # nothing answered


async def test_reaction_event(server: FakeMattermost, app: App) -> None:
    seen: list[Inbound] = []

    async def listener(event: Inbound) -> None:
        seen.append(event)

    app.bus.reaction_commands.append(listener)
    post = await server.user_post("deploy?")
    await server.reaction(post["id"], "white_check_mark")
    await eventually(lambda: seen)
    assert seen[0].kind == "reaction" and seen[0].text == "white_check_mark"
    assert seen[0].message_id == post["id"] and seen[0].channel == CHANNEL


async def test_escaping_blocks_mass_mentions() -> None:
    out = escape("hi @channel @all *bold* [x](y)")
    assert "@channel" not in out and "@all" not in out
    assert "\\*bold\\*" in out and "\\[x\\]\\(y\\)" in out


async def test_unknown_command_echo_is_escaped(server: FakeMattermost, app: App) -> None:
    await server.user_post("!hlp @here")
    [echo] = await barrier(server)  # the unknown command is answered, its echo...
    assert "hlp" in echo["message"] and "@here" not in echo["message"]  # ...defused
    for reply in replies(server):
        assert "@here" not in reply["message"]


async def test_edit_patches_post(server: FakeMattermost, app: App) -> None:
    from chatopsd.core.messages import Destination, Reply

    connector = app.supervisors[0].connector
    sent = await connector.send(Destination("mattermost", CHANNEL), Reply(text="v1"))
    assert sent is not None
    await connector.edit(sent, Reply(text="v2 @all"))
    assert server.posts[sent.message_id]["message"].startswith("v2 @\u200ball")


async def test_resume_same_connection_no_resync(server: FakeMattermost, app: App) -> None:
    connector: Any = app.supervisors[0].connector
    before = connector.resyncs
    server.drop()
    await server.user_post("!help")  # queued on the connection, replayed on resume
    await eventually(lambda: replies(server), timeout=8)
    assert server.ws_connects[-1]["connection_id"] and connector.resyncs == before
    assert len(await barrier(server)) == 1


async def test_new_connection_fetches_missed_post_once(server: FakeMattermost, app: App) -> None:
    connector: Any = app.supervisors[0].connector
    server.drop()
    server.forget_connections()  # server restarted: the post below is never sent over a socket
    await server.user_post("!help")
    await eventually(lambda: replies(server), timeout=8)
    assert connector.resyncs >= 2
    # a second outage and resync sees the same post again: still answered once
    server.drop()
    server.forget_connections()
    await eventually(lambda: connector.resyncs >= 3, timeout=8)
    assert len(await barrier(server)) == 1


async def test_seq_gap_triggers_resync(server: FakeMattermost, app: App) -> None:
    connector: Any = app.supervisors[0].connector
    before = connector.resyncs
    live = server.current
    server.skip_seq()  # an event lost in transit...
    server.current = None  # ...and the command itself is never sent over the socket
    await server.user_post("!help")
    assert replies(server) == []
    server.current = live
    await server.user_post("unrelated")  # its seq shows the gap
    await eventually(lambda: replies(server))
    assert connector.resyncs == before + 1
    assert len(await barrier(server)) == 1


async def test_failed_resync_retried_after_reconnect(server: FakeMattermost, app: App) -> None:
    connector: Any = app.supervisors[0].connector
    server.since_failures = 1  # the first catch-up fails with HTTP 500
    server.drop()
    server.forget_connections()
    await server.user_post("!help")
    await eventually(lambda: replies(server), timeout=10)
    assert connector.resyncs >= 3  # startup, the failed one, the retry
    assert len(await barrier(server)) == 1


async def test_half_open_detected(server: FakeMattermost, app: App) -> None:
    supervisor = app.supervisors[0]
    connects = len(server.ws_connects)
    server.mute_pings = True
    await eventually(lambda: supervisor.health.state is not State.READY, timeout=4)
    server.mute_pings = False
    await eventually(lambda: len(server.ws_connects) > connects, timeout=8)


@pytest.mark.parametrize(
    "headers", [{"Retry-After": "0.6"}, {"X-RateLimit-Reset": "0.6", "X-RateLimit-Remaining": "0"}]
)
async def test_429_retried_honouring_header(
    server: FakeMattermost, app: App, headers: dict[str, str]
) -> None:
    server.post_failures.append((429, headers))
    await server.user_post("!help")
    await eventually(lambda: replies(server), timeout=8)
    assert len(server.post_times) == 2
    assert server.post_times[1] - server.post_times[0] >= 0.6


async def test_429_without_headers_and_5xx_retried(server: FakeMattermost, app: App) -> None:
    server.post_failures += [(429, {}), (502, {})]
    await server.user_post("!help")
    await eventually(lambda: replies(server), timeout=8)
    assert len(server.post_times) == 3


async def test_malformed_frame_ignored(
    server: FakeMattermost, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "chatopsd.mattermost")
    await server.send_raw("{not json")
    await server.event("posted", {"post": "{broken"})
    await server.user_post("!help")
    await eventually(lambda: replies(server))
    assert "malformed websocket frame" in caplog.text
    assert "without a valid post" in caplog.text


async def test_bad_token_is_fatal(server: FakeMattermost, tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(
        tmp_path,
        mattermost={"url": server.url, "token": "mm-test-wrong"},
        console={"enabled": False},
    )
    app = await start_app(config, clock)
    try:
        health = app.supervisors[0].health
        await eventually(lambda: health.state is State.FAILED)
        assert "mattermost.token" in health.reason and "wrong" not in health.reason
    finally:
        await app.stop()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def tls_server(ca: trustme.CA) -> FakeMattermost:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    fake = FakeMattermost(ssl_context=ctx)
    await fake.start()
    return fake


async def test_tls_with_private_ca(ca: trustme.CA, tmp_path: Path, clock: FakeClock) -> None:
    server = await tls_server(ca)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = await start_app(mm_config(tmp_path, server.url, ca_file=str(ca_file)), clock)
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        await server.user_post("!help")
        await eventually(lambda: replies(server))
    finally:
        await app.stop()
        await server.stop()


async def test_tls_reconnect_reads_the_ca_file_once(
    ca: trustme.CA, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The REST session and every websocket (re)connect share one TLS context: the CA store
    is loaded once per connector, not once per connection (memory, and CPU on each retry)."""
    server = await tls_server(ca)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    loads: list[str | None] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        loads.append(kwargs.get("cafile"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    app = await start_app(mm_config(tmp_path, server.url, ca_file=str(ca_file)), clock)
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        connects = len(server.ws_connects)
        server.drop()
        await eventually(lambda: len(server.ws_connects) > connects, timeout=8)
        await server.user_post("!help")
        await eventually(lambda: replies(server), timeout=8)
        assert loads.count(str(ca_file)) == 1, loads
    finally:
        await app.stop()
        await server.stop()


async def test_tls_untrusted_fails_clearly(
    ca: trustme.CA, tmp_path: Path, clock: FakeClock
) -> None:
    server = await tls_server(ca)
    app = await start_app(mm_config(tmp_path, server.url), clock)
    try:
        health = app.supervisors[0].health
        await eventually(lambda: health.state is State.FAILED)
        assert "mattermost.ca_file" in health.reason and "not trusted" in health.reason
    finally:
        await app.stop()
        await server.stop()


def test_fake_post_is_json_string() -> None:
    assert json.loads(json.dumps({"post": "{}"}))["post"] == "{}"


async def test_team_filter(server: FakeMattermost, tmp_path: Path, clock: FakeClock) -> None:
    app = await start_app(mm_config(tmp_path, server.url, teams=["elsewhere"]), clock)
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        await server.user_post("!help")
        await asyncio.sleep(0.3)
        assert replies(server) == []
    finally:
        await app.stop()


async def test_restart_resumes_from_stored_cursor(
    server: FakeMattermost, tmp_path: Path, clock: FakeClock
) -> None:
    config = mm_config(tmp_path, server.url)
    app = await start_app(config, clock)
    await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
    await server.user_post("!help")
    await eventually(lambda: replies(server))
    assert server.current is not None
    first_connection = server.current.id
    await app.stop()
    server.drop()
    await server.user_post("!help")  # typed while the daemon was down
    app = await start_app(config, clock)
    try:
        await eventually(lambda: len(replies(server)) == 2, timeout=8)
        assert server.ws_connects[-1]["connection_id"] == first_connection  # resumed
        assert len(await barrier(server)) == 2
    finally:
        await app.stop()


def test_render_blocks() -> None:
    from chatopsd.connectors.mattermost.render import render
    from chatopsd.core.messages import Button, Reply

    out = render(
        Reply(
            title="Incident *1*",
            text="@here paged",
            fields=(("IC", "@alice"),),
            code="x ``` @all",
            buttons=(Button("Page", "ic page"),),
        )
    )
    assert out.startswith("**Incident \\*1\\***")
    assert "@here" not in out and "@alice" not in out and "@all" not in out
    assert "- **IC**: @\u200balice" in out
    assert "````\nx ``` @\u200ball\n````" in out  # fence longer than the user's backticks
    assert "Page: `!ic page`" in out


async def test_malformed_frames_from_the_field_keep_the_connection(
    server: FakeMattermost, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "chatopsd.mattermost")
    connects = len(server.ws_connects)
    good = {"id": "x1", "channel_id": CHANNEL, "user_id": "u1", "message": "!help"}
    deep = "[" * 3000 + "]" * 3000
    for frame in (
        {"event": "posted", "data": {"post": json.dumps({**good, "create_at": "abc"})}},
        {"event": "posted", "data": {"post": json.dumps({**good, "props": "x"})}},
        {"event": "reaction_added", "broadcast": [], "data": {"reaction": json.dumps(good)}},
    ):
        await server.send_raw(json.dumps(frame))
    await server.send_raw('{"event": "posted", "data": {"post": {"props": ' + deep + "}}}")
    await server.send_raw(json.dumps({"event": "posted", "data": {"post": '{"props": ' + deep}}))
    await server.user_post("!help")
    await eventually(lambda: replies(server))
    assert len(server.ws_connects) == connects  # the same websocket all along
    assert app.supervisors[0].health.state is State.READY
    assert len(replies(server)) == 1  # none of the malformed posts became a command
    assert caplog.text.count("mattermost: ") >= 5
