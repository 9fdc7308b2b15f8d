"""Slack end to end: the real App and the real slack-sdk against tests/fakes/slack.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatopsd.app import App
from chatopsd.connectors.base import State
from chatopsd.core.messages import Button, Destination, Inbound, Reply
from tests.conftest import FakeClock
from tests.fakes.slack import APP_TOKEN, BOT_ID, BOT_USER, FakeSlack
from tests.fixtures.slack import (
    fake,  # noqa: F401 (fixtures)
    slack_config,
    started,
)


@pytest.fixture
async def app(tmp_path: Path, fake: FakeSlack, clock: FakeClock) -> AsyncIterator[App]:
    running = await started(slack_config(tmp_path, fake), clock)
    yield running
    await running.stop()


def texts(fake: FakeSlack, method: str = "chat.postMessage") -> list[str]:
    return [str(p["text"]) for p in fake.posts(method)]


async def settle(fake: FakeSlack, barrier_text: str = "!help") -> None:
    """Send one more command and wait for its answer: everything sent before it is done."""
    before = len(fake.posts())
    await fake.event(fake.message(barrier_text, user="U2"))
    await fake.wait_for(lambda: len(fake.posts()) > before)


async def test_prefixed_command_in_thread_is_answered_in_thread(app: App, fake: FakeSlack) -> None:
    envelope = await fake.event(fake.message("!ic", thread_ts="1699999999.000001"))
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    post = fake.posts()[0]
    assert post["channel"] == "C1"
    assert post["thread_ts"] == "1699999999.000001"
    assert "PagerDuty is not configured" in post["text"]
    assert post["blocks"][0] == {
        "type": "section",
        # never "No Incident Commanders on call": without PagerDuty we cannot know
        "text": {
            "type": "mrkdwn",
            "text": "*⚠ Can't tell who is on call: PagerDuty is not configured*",
        },
    }
    assert envelope in fake.acks


async def test_top_level_command_is_answered_in_channel(app: App, fake: FakeSlack) -> None:
    await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    post = fake.posts()[0]
    assert "thread_ts" not in post
    assert "chatopsd commands" in post["text"]
    assert any(b["text"]["text"].startswith("```") for b in post["blocks"] if "text" in b)


async def test_ack_follows_the_claim_well_within_slacks_window(app: App, fake: FakeSlack) -> None:
    # The ack waits until the event is claimed in the state store (a kill in between then
    # loses nothing: Slack delivers it again), and the claim carries the resolved user.
    fake.delay["users.info"] = 0.3
    envelope = await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.posts()) == 1 and envelope in fake.acks)
    timeline = fake.timeline
    assert timeline.index(("api", "users.info")) < timeline.index(("ack", envelope))
    assert fake.acks[envelope] == {"envelope_id": envelope}
    assert fake.ack_times[envelope] - fake.sent_times[envelope] < 1.0  # Slack allows 3 s
    [row] = await app.audit.since(None)
    assert row.event_id and row.outcome == "ok"  # claimed and handled once


async def test_mention_is_answered_once(app: App, fake: FakeSlack) -> None:
    # Slack sends both a message event and an app_mention for the same text.
    text = f"<@{BOT_USER}> help"
    await fake.event(fake.message(text))
    mention = fake.message(text)
    mention["type"] = "app_mention"
    await fake.event(mention)
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    await settle(fake)
    assert sum("chatopsd commands" in t for t in texts(fake)) == 2  # the mention + the barrier


async def test_prefixed_text_with_a_mention_is_answered_once(app: App, fake: FakeSlack) -> None:
    text = f"!help <@{BOT_USER}>"
    await fake.event(fake.message(text))
    mention = fake.message(text)
    mention["type"] = "app_mention"
    await fake.event(mention)
    await settle(fake)
    # "help <@UBOT>" may be answered in the channel or privately, but only once
    assert len(fake.posts()) + len(fake.posts("chat.postEphemeral")) == 2


async def test_direct_message_needs_no_prefix(app: App, fake: FakeSlack) -> None:
    await fake.event(fake.message("help", channel="D1", channel_type="im"))
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    assert fake.posts()[0]["channel"] == "D1"


async def test_slash_command_acks_with_interim_text_then_posts(app: App, fake: FakeSlack) -> None:
    envelope = await fake.slash("/ic", "")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    ack = fake.acks[envelope]
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "/ic" in ack["payload"]["text"]
    assert "PagerDuty is not configured" in fake.posts()[0]["text"]


async def test_slash_status_and_unknown_slash(app: App, fake: FakeSlack) -> None:
    await fake.slash("/status")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    assert "No status sources are configured" in fake.posts()[0]["text"]
    # /incident is not registered in this build: a usage error, shown only to the asker
    await fake.slash("/incident", "open db down")
    await fake.wait_for(lambda: len(fake.posts("chat.postEphemeral")) == 1)
    eph = fake.posts("chat.postEphemeral")[0]
    assert eph["user"] == "U1"
    assert eph["channel"] == "C1"


async def test_button_click_runs_its_command(app: App, fake: FakeSlack) -> None:
    await fake.click("help", thread_ts="1699999999.000002")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    assert "chatopsd commands" in fake.posts()[0]["text"]
    assert fake.posts()[0]["thread_ts"] == "1699999999.000002"


async def test_foreign_button_is_ignored(app: App, fake: FakeSlack) -> None:
    envelope = await fake.click("help", action_id="other-app:approve")
    await settle(fake)
    assert len(fake.posts()) == 1
    assert envelope in fake.acks


async def test_our_buttons_are_rendered_with_their_command(app: App, fake: FakeSlack) -> None:
    sent = await app.outbox.send(
        Destination("slack", "C1"),
        Reply(text="x", buttons=(Button("Page ICs", "ic page", "danger"),)),
    )
    assert sent is not None
    actions = fake.posts()[0]["blocks"][-1]
    assert actions["type"] == "actions"
    assert actions["elements"][0]["value"] == "ic page"
    assert actions["elements"][0]["action_id"].startswith("chatopsd:")
    assert actions["elements"][0]["style"] == "danger"


async def test_own_and_other_bot_messages_are_ignored(app: App, fake: FakeSlack) -> None:
    await fake.event(fake.message("!help", user=BOT_USER, bot_id=BOT_ID))
    await fake.event(fake.message("!help", user="U9", bot_id="B9"))
    await fake.event(fake.message("!help", subtype="bot_message", bot_id="B9", user="U9"))
    await fake.event(fake.message("!help", subtype="message_changed"))
    await settle(fake)
    assert len(fake.posts()) == 1


async def test_other_bots_allowed_by_config(
    tmp_path: Path, fake: FakeSlack, clock: FakeClock
) -> None:
    app = await started(slack_config(tmp_path, fake, allow_bots=True), clock)
    try:
        await fake.event(fake.message("!help", user="U9", bot_id="B9"))
        # U9 is unknown to users.info, so its answer may come after a barrier's: wait for it
        await fake.wait_for(lambda: len(fake.posts()) == 1)
        await fake.event(fake.message("!help", user=BOT_USER, bot_id=BOT_ID))  # never ourselves
        # Each event is handled in its own task: wait for the bot's answer before the barrier,
        # or the barrier's answer may come first under load.
        await fake.wait_for(lambda: len(fake.posts()) == 1)
        await settle(fake)
        assert len(fake.posts()) == 2
    finally:
        await app.stop()


async def test_reaction_reaches_reaction_listeners(app: App, fake: FakeSlack) -> None:
    seen: list[Inbound] = []

    async def listener(event: Inbound) -> None:
        seen.append(event)

    app.bus.reaction_commands.append(listener)
    await fake.event(
        {
            "type": "reaction_added",
            "user": "U1",
            "reaction": "white_check_mark",
            "item": {"type": "message", "channel": "C1", "ts": "1700000000.000042"},
            "item_user": BOT_USER,
            "event_ts": "1700000001.000001",
        },
        event_id="EvReact1",
    )
    await fake.wait_for(lambda: len(seen) == 1)
    assert seen[0].kind == "reaction"
    assert seen[0].text == "white_check_mark"
    assert seen[0].message_id == "1700000000.000042"
    assert seen[0].actor.email == "jane@example.com"


async def test_actor_resolved_to_name_and_email_and_cached(app: App, fake: FakeSlack) -> None:
    await fake.event(fake.message("!help"))
    await fake.event(fake.message("!ic"))
    await fake.wait_for(lambda: len(fake.posts()) == 2)
    assert len(fake.posts("users.info")) == 1
    entries = await app.audit.since(None)
    assert {e.actor_name for e in entries} == {"Jane Doe"}
    assert {e.actor for e in entries} == {"U1"}


async def test_redelivered_event_is_handled_once(app: App, fake: FakeSlack) -> None:
    event = fake.message("!help")
    first = await fake.event(event, event_id="EvDup1")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    again = await fake.event(event, event_id="EvDup1", retry_attempt=1)
    await settle(fake)
    assert len(fake.posts()) == 2  # the first answer and the barrier's
    assert first in fake.acks and again in fake.acks  # the redelivery is acked all the same


async def test_redelivery_after_restart_is_handled_once(
    tmp_path: Path, fake: FakeSlack, clock: FakeClock
) -> None:
    config = slack_config(tmp_path, fake)
    event = fake.message("!help")
    app = await started(config, clock)
    await fake.event(event, event_id="EvRestart1")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    await app.stop()
    app = await started(config, clock)
    try:
        await fake.event(event, event_id="EvRestart1", retry_attempt=2)
        await settle(fake)
        assert len(fake.posts()) == 2
    finally:
        await app.stop()


async def test_refresh_requested_loses_no_event(app: App, fake: FakeSlack) -> None:
    await fake.disconnect("refresh_requested")
    # sent while the SDK is between sockets: they wait for the new one, like on Slack
    for i in range(3):
        await fake.event(fake.message("!help"), event_id=f"EvRefresh{i}")
    await fake.wait_for(lambda: len(fake.posts()) == 3)
    assert fake.connections == 2
    await settle(fake)
    assert len(fake.posts()) == 4
    assert not fake.pending


async def test_warning_disconnect_then_command(app: App, fake: FakeSlack) -> None:
    await fake.disconnect("warning")
    await fake.wait_for(lambda: fake.connections == 2)
    await settle(fake)
    assert len(fake.posts()) == 1


async def test_abrupt_drop_is_noticed_and_the_next_command_answered(
    app: App, fake: FakeSlack
) -> None:
    loop = asyncio.get_running_loop()
    fake.drop()
    started_at = loop.time()
    await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.posts()) == 1, timeout=5)
    assert fake.connections == 2
    assert loop.time() - started_at < 5


async def test_half_open_socket_is_replaced(app: App, fake: FakeSlack) -> None:
    loop = asyncio.get_running_loop()
    fake.go_half_open()
    started_at = loop.time()
    envelope = await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.posts()) == 1, timeout=8)
    assert fake.connections == 2
    assert loop.time() - started_at < 8
    assert envelope in fake.acks


async def test_rate_limited_post_waits_for_retry_after(app: App, fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", 429, "ratelimited", {"Retry-After": "1"})
    await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.call_times("chat.postMessage")) == 2, timeout=5)
    first, second = fake.call_times("chat.postMessage")
    assert second - first >= 1.0


async def test_rate_limit_exhausted_goes_back_to_the_outbox(app: App, fake: FakeSlack) -> None:
    # Each 429 reaches the outbox (the one layer that retries), which waits Retry-After.
    for _ in range(3):
        fake.fail("chat.postMessage", 429, "ratelimited", {"Retry-After": "0"})
    await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.call_times("chat.postMessage")) == 4, timeout=8)
    await fake.wait_for(lambda: app.outbox.sent >= 1)
    assert app.outbox.failed == 0


async def test_server_error_is_retried(app: App, fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", 503, "service_unavailable")
    await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.call_times("chat.postMessage")) == 2, timeout=5)
    await fake.wait_for(lambda: app.outbox.sent >= 1)


async def test_invalid_bot_token_is_fatal(
    tmp_path: Path, fake: FakeSlack, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "chatopsd")
    app = App(slack_config(tmp_path, fake, bot_token="xoxb-test-wrong"), clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app._tasks[0], 5)  # the supervisor gives up instead of looping
        health = app.supervisors[0].health
        assert health.state is State.FAILED
        assert "invalid_auth" in health.reason and "slack.bot_token" in health.reason
        assert "xoxb-test-wrong" not in health.reason
        assert len(fake.posts("auth.test")) == 1
        assert "slack stopped" in caplog.text
    finally:
        await app.stop()


async def test_invalid_app_token_is_fatal(
    tmp_path: Path, fake: FakeSlack, clock: FakeClock
) -> None:
    app = App(slack_config(tmp_path, fake, app_token="xapp-test-wrong"), clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app._tasks[0], 5)
        assert "slack.app_token" in app.supervisors[0].health.reason
    finally:
        await app.stop()


async def test_connections_open_failure_is_backed_off_then_connects(
    tmp_path: Path, fake: FakeSlack, clock: FakeClock
) -> None:
    fake.fail("apps.connections.open", 200, "internal_error")
    app = App(slack_config(tmp_path, fake), clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        assert app.supervisors[0].health.failures == 1
        assert len(fake.posts("apps.connections.open")) == 2
        await settle(fake)
    finally:
        await app.stop()


async def test_malformed_envelopes_are_logged_and_ignored(
    app: App, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "chatopsd")
    await fake.send_raw("not json at all")
    await fake.send_raw("{broken json")
    await fake.send_raw(json.dumps({"type": "events_api", "payload": {}}))
    bad = await fake.send_envelope("events_api", "garbage")
    no_event = await fake.send_envelope("events_api", {"event_id": "EvX", "type": "event_callback"})
    bad_slash = await fake.send_envelope("slash_commands", {"command": "/ic"})
    await settle(fake)
    assert len(fake.posts()) == 1
    assert {bad, no_event, bad_slash} <= set(fake.acks)  # acked, so Slack stops resending
    assert caplog.text.count("malformed") >= 4
    assert "payload.event is missing" in caplog.text


async def test_user_text_cannot_ping_the_channel(app: App, fake: FakeSlack) -> None:
    await fake.event(fake.message("!ic <!here>@channel<@U2>"))
    await fake.wait_for(lambda: len(fake.posts()) + len(fake.posts("chat.postEphemeral")) == 1)
    sent = (fake.posts() + fake.posts("chat.postEphemeral"))[0]
    body = json.dumps(sent)
    assert "<!here>" not in body and "<@U2>" not in body
    assert "&lt;!here&gt;" in sent["text"]
    assert "@channel" not in sent["text"]


async def test_ephemeral_and_edit(app: App, fake: FakeSlack) -> None:
    dest = Destination("slack", "C1", thread="1699999999.000003", actor="U1")
    private = await app.outbox.send(dest, Reply(text="only you", ephemeral=True))
    assert private is not None
    eph = fake.posts("chat.postEphemeral")[0]
    assert eph["user"] == "U1" and eph["thread_ts"] == "1699999999.000003"
    sent = await app.outbox.send(Destination("slack", "C1"), Reply(title="Status", text="ok"))
    assert sent is not None
    await app.outbox.edit(sent, Reply(title="Status", text="all good"))
    update = fake.posts("chat.update")[0]
    assert update["ts"] == sent.message_id
    assert update["channel"] == "C1"
    assert "all good" in update["text"]


async def test_slash_in_a_channel_the_bot_is_not_in_answers_via_response_url(
    app: App, fake: FakeSlack
) -> None:
    fake.fail("chat.postMessage", 200, "not_in_channel")
    await fake.slash("/ic")
    await fake.wait_for(lambda: len(fake.posts("response_url")) == 1)
    body = fake.posts("response_url")[0]
    assert "PagerDuty is not configured" in body["text"]
    assert body["response_type"] == "in_channel"
    assert body["blocks"]
    assert app.outbox.failed == 0


async def test_not_in_channel_without_slash_is_not_retried(app: App, fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", 200, "not_in_channel")
    await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: app.outbox.failed == 1)
    assert len(fake.posts()) == 1
    assert fake.posts("response_url") == []


async def test_event_arriving_during_shutdown_is_left_for_the_next_run(
    tmp_path: Path, fake: FakeSlack, clock: FakeClock
) -> None:
    config = slack_config(tmp_path, fake)
    app = await started(config, clock)
    await app.bus.drain(1)  # what stop() does first: no new commands from here on
    envelope = await fake.event(fake.message("!help"), event_id="EvLate1")
    await asyncio.sleep(0.3)
    assert envelope not in fake.acks and not fake.posts()
    await app.stop()
    app = await started(config, clock)  # the fake redelivers what was never acked
    try:
        await fake.wait_for(lambda: len(fake.posts()) == 1)
        await fake.wait_for(lambda: not fake.pending)  # and acked by the new run
    finally:
        await app.stop()


async def other_connection(fake: FakeSlack) -> tuple[aiohttp.ClientSession, Any]:
    """A second Socket Mode connection of the same app (another instance) that never acks."""
    session = aiohttp.ClientSession()
    async with session.post(
        fake.api_url + "apps.connections.open", headers={"Authorization": f"Bearer {APP_TOKEN}"}
    ) as response:
        url = (await response.json())["url"]
    ws = await session.ws_connect(url)
    hello = await ws.receive_json()
    assert hello["type"] == "hello" and hello["num_connections"] == 2
    return session, ws


async def test_envelopes_spread_over_connections_and_unacked_ones_come_back(
    app: App, fake: FakeSlack
) -> None:
    fake.ack_timeout = 0.5
    session, ws = await other_connection(fake)
    try:
        for i in range(6):
            await fake.event(fake.message("!help", channel=f"C{i}"), event_id=f"EvSpread{i}")
        seen = [await ws.receive_json() for _ in range(3)]  # one envelope in two comes here
        assert [e["retry_attempt"] for e in seen] == [0, 0, 0]
        # never acked there: after the window Slack sends each again, to the other connection
        await fake.wait_for(lambda: len(fake.posts()) == 6)
        again = [d for d in fake.deliveries if d[2] == 1]
        assert sorted(d[0] for d in again) == sorted(e["envelope_id"] for e in seen)
        assert {fake.sent_envelope(d[0])["retry_reason"] for d in again} == {"timeout"}
        assert sorted(p["channel"] for p in fake.posts()) == [f"C{i}" for i in range(6)]

        # a connection that closes with envelopes unacked: they move on at once
        before = len(fake.deliveries)
        await fake.event(fake.message("!help", channel="C6"), event_id="EvClosed1")
        await fake.event(fake.message("!help", channel="C7"), event_id="EvClosed2")
        mine = await ws.receive_json()
        await ws.close()
        await fake.wait_for(lambda: len(fake.posts()) == 8)
        retried = fake.sent_envelope(mine["envelope_id"])
        assert (retried["retry_attempt"], retried["retry_reason"]) == (1, "connection_failed")
        assert len(fake.deliveries) == before + 3
        assert not fake.pending
    finally:
        await session.close()
