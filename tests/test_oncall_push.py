"""On-call pushed out to chat, end to end on every platform (tests/rig.py): shift reminders by
direct message and a channel's topic kept true, from the fake PagerDuty's timed shifts
(spec-checked), on an injected clock. Each platform's real client talks to its fake: Slack
(conversations.open, conversations.setTopic), Discord (POST /users/@me/channels, Modify
Channel), Mattermost (POST /channels/direct, PUT /channels/{id}/patch). The person's chat
identity is linked to her PagerDuty email by `[pagerduty.users]` (compared without case).

Slack's own extras (user groups, its 250-character topic, failures it answers with) follow,
on the Slack fake only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator
from slack_sdk.errors import SlackApiError

from chatopsd.app import App
from chatopsd.connectors.slack.client import SlackConnector
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.core.capabilities import CHANNEL_TOPICS, DIRECT_MESSAGES
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from tests.conftest import FakeClock
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401
from tests.rig import Chat, SlackChat, chat, daemon, platforms_with  # noqa: F401
from tests.spec_files import vendored_spec

MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # the clock starts Monday 12:00 UTC
DAY = timedelta(days=1)
SHIFT = "You're IC Primary from Tue 08:00 until Wed 08:00"
SLACK_ONLY = pytest.mark.parametrize("chat", ["slack"], indirect=True)
# every platform whose package says it can send a direct message (Toy Chat too)
WITH_DMS = pytest.mark.parametrize("chat", platforms_with(DIRECT_MESSAGES), indirect=True)
WITH_TOPICS = pytest.mark.parametrize("chat", platforms_with(CHANNEL_TOPICS), indirect=True)


async def start(
    tmp_path: Path, chat: Chat, pd: FakePagerDuty, clock: FakeClock, **pagerduty: Any
) -> App:
    """Carol takes IC Primary from Ada on Tuesday 08:00, Grace (no chat identity) after her."""
    pd.now = clock.now
    pd.users["PCAROL"] = FakeUser("PCAROL", "Carol Poe", "carol@example.com")
    pd.shifts["PIC1"] = [
        ("PADA", 1, MON8, MON8 + DAY),
        ("PCAROL", 1, MON8 + DAY, MON8 + 2 * DAY),
        ("PGRACE", 1, MON8 + 2 * DAY, MON8 + 3 * DAY),
    ]
    settings = pagerduty or {
        "remind_before_minutes": [60],
        "users": {f"{chat.name}:{chat.person}": "Carol@Example.com"},
    }
    app = await daemon(tmp_path, chat, clock, pagerduty=pd_section(pd, **settings))
    await first_refresh(app)
    await refresh(app)
    return app


async def refresh(app: App) -> None:
    assert app.part(OnCallRefresher) is not None
    await app.part(OnCallRefresher).refresh_job()


@WITH_DMS
async def test_a_reminder_is_one_direct_message_to_the_linked_person(
    tmp_path: Path, chat: Chat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    app = await start(tmp_path, chat, pd, clock)
    try:
        assert chat.direct_messages() == []  # Carol starts Tue 08:00: 20 h away
        clock.advance(19 * 3600 + 15 * 60)  # Tue 07:15: within the hour
        await refresh(app)
        await refresh(app)
        [message] = chat.direct_messages()
        assert SHIFT in message and "(handoff from Ada Lovelace)" in message, message
        assert chat.direct_recipients() == {chat.person}
        posted = len(chat.posts())
        await refresh(app)
        assert len(chat.posts()) == posted  # nothing more, anywhere
    finally:
        await app.stop()


@WITH_DMS
async def test_reminders_at_each_threshold_exactly_once_across_a_restart(
    tmp_path: Path, chat: Chat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    settings = {
        "remind_before_minutes": [720, 60],
        "users": {f"{chat.name}:{chat.person}": "carol@example.com"},
    }
    app = await start(tmp_path, chat, pd, clock, **settings)
    try:
        assert chat.direct_messages() == []  # 20 h away: no threshold reached
        clock.advance(8 * 3600 + 30 * 60)  # Mon 20:30: within 720 minutes
        await refresh(app)
        await refresh(app)
        want = f"{SHIFT} (handoff from Ada Lovelace)"
        assert len(chat.direct_messages()) == 1, chat.direct_messages()
        assert want in chat.direct_messages()[0]
        assert chat.direct_recipients() == {chat.person}
    finally:
        await app.stop()
    app = await start(tmp_path, chat, pd, clock, **settings)
    try:
        await refresh(app)
        assert len(chat.direct_messages()) == 1  # not again after a restart
        clock.advance(10 * 3600 + 45 * 60)  # Tue 07:15: within 60 minutes
        await refresh(app)
        await refresh(app)
        assert len(chat.direct_messages()) == 2 and want in chat.direct_messages()[1]
        clock.advance(3600)  # her shift has started: nothing more
        await refresh(app)
        assert len(chat.direct_messages()) == 2
    finally:
        await app.stop()


@WITH_TOPICS
async def test_the_channel_topic_is_written_once_per_change_and_a_hand_edit_kept(
    tmp_path: Path, chat: Chat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    keep = {"topic_channels": {f"{chat.name}:{chat.channel}": "IC: {ic}"}}
    app = await start(tmp_path, chat, pd, clock, **keep)
    try:
        assert chat.topic() == "IC: Ada Lovelace, Alan Turing"
        assert chat.topic_writes() == 1
        chat.edit_topic("edited by a person")
        await refresh(app)
        await refresh(app)
        assert chat.topic() == "edited by a person"
        assert chat.topic_writes() == 1
        clock.advance(20 * 3600 + 60)  # Tue 08:01: Carol takes over IC Primary
        await refresh(app)
        assert chat.topic() == "IC: Carol Poe, Alan Turing"
        assert chat.topic_writes() == 2
    finally:
        await app.stop()
    app = await start(tmp_path, chat, pd, clock, **keep)  # a restart writes nothing new
    try:
        await refresh(app)
        assert chat.topic_writes() == 2
    finally:
        await app.stop()


# -- Slack only: user groups, its topic limit, and failures as Slack answers them ----------

KEEP = {
    "topic_channels": {"slack:C0ONCALL": "IC: {ic} · Responders: {responders}"},
    "slack_usergroups": {"PIC1": "S0123ABC"},
    # in the fake, Bob (U2) is Ada's Slack account, U0CAROL Carol's
    "users": {"slack:U2": "ada@example.com", "slack:U0CAROL": "carol@example.com"},
}


def calls(fake: FakeSlack, method: str) -> int:
    return len(fake.posts(method))


@SLACK_ONLY
async def test_a_late_start_sends_only_the_closest_threshold_and_a_failed_dm_stays_owed(
    tmp_path: Path, chat: SlackChat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    settings = {
        "remind_before_minutes": [720, 60],
        "users": {"slack:U0CAROL": "carol@example.com"},
    }
    app = await start(tmp_path, chat, pd, clock, **settings)
    try:
        clock.advance(19 * 3600 + 30 * 60)  # Tue 07:30: both thresholds reached at once
        chat.fake.fail("conversations.open", 200, "user_disabled")  # a refused DM...
        with pytest.raises(RuntimeError, match="could not be sent"):
            await refresh(app)  # ...is a failure the scheduler counts
        assert chat.direct_messages() == []
        await refresh(app)  # ...and is sent by the next run
        assert len(chat.direct_messages()) == 1
    finally:
        await app.stop()


@SLACK_ONLY
async def test_topic_and_user_group_written_once_per_change_and_a_hand_edit_kept(
    tmp_path: Path, chat: SlackChat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    fake = chat.fake
    fake.usergroups["S0123ABC"] = []
    app = await start(tmp_path, chat, pd, clock, **KEEP)
    try:
        topic = fake.channels["C0ONCALL"]["topic"]
        assert topic.startswith("IC: Ada Lovelace, Alan Turing · Responders: "), topic
        assert "Edsger Dijkstra" in topic
        assert fake.usergroups["S0123ABC"] == ["U2"]
        assert calls(fake, "conversations.setTopic") == 1
        assert calls(fake, "usergroups.users.update") == 1
        fake.channels["C0ONCALL"]["topic"] = "Freeze until Friday -- Ada"  # a person's edit
        await refresh(app)
        await refresh(app)
        assert fake.channels["C0ONCALL"]["topic"] == "Freeze until Friday -- Ada"
        assert calls(fake, "conversations.setTopic") == 1
        assert calls(fake, "usergroups.users.update") == 1
        clock.advance(20 * 3600 + 60)  # Tue 08:01: Carol takes over IC Primary
        await refresh(app)
        assert fake.channels["C0ONCALL"]["topic"].startswith("IC: Carol Poe, Alan Turing")
        assert fake.usergroups["S0123ABC"] == ["U0CAROL"]
        assert calls(fake, "conversations.setTopic") == 2
        assert calls(fake, "usergroups.users.update") == 2
    finally:
        await app.stop()
    app = await start(tmp_path, chat, pd, clock, **KEEP)  # a restart writes nothing new
    try:
        await refresh(app)
        assert calls(fake, "conversations.setTopic") == 2
        assert calls(fake, "usergroups.users.update") == 2
    finally:
        await app.stop()


@SLACK_ONLY
async def test_a_refused_topic_write_is_retried_and_counted(
    tmp_path: Path, chat: SlackChat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    fake = chat.fake
    fake.usergroups["S0123ABC"] = []
    app = await start(tmp_path, chat, pd, clock, **KEEP)
    try:
        clock.advance(20 * 3600 + 60)  # Tue 08:01: Carol takes over
        fake.fail("conversations.setTopic", 200, "channel_not_found")
        with pytest.raises(RuntimeError, match="topic:slack:C0ONCALL"):
            await refresh(app)
        assert fake.channels["C0ONCALL"]["topic"].startswith("IC: Ada Lovelace")
        assert fake.usergroups["S0123ABC"] == ["U0CAROL"]  # the other target still kept
        await refresh(app)
        assert fake.channels["C0ONCALL"]["topic"].startswith("IC: Carol Poe")
    finally:
        await app.stop()


SPEC = vendored_spec("slack", "web-api-openapi-v2.json")


@SLACK_ONLY
@pytest.mark.skipif(not SPEC.exists(), reason="the Slack spec is not here")
async def test_conversations_open_answers_match_the_published_schema(
    chat: SlackChat, clock: FakeClock
) -> None:
    fake = chat.fake
    connector = SlackConnector(
        SlackSection(app_token=APP_TOKEN, bot_token=BOT_TOKEN, api_url=fake.api_url), clock=clock
    )
    spec = json.loads(SPEC.read_text())
    answers: list[tuple[str, str, dict[str, Any]]] = []
    fake.usergroups["S0123ABC"] = []

    async def call(method: str, **params: str) -> None:
        try:
            found = await connector.web().api_call(method, params=params)
            answers.append((method, "200", dict(found.data)))  # type: ignore[arg-type]
        except SlackApiError as exc:
            answers.append((method, "default", dict(exc.response.data)))  # type: ignore[arg-type]

    try:
        for users in ("U0CAROL", "U0NOBODY", ""):
            await call("conversations.open", users=users)
        await call("usergroups.users.update", usergroup="S0123ABC", users="U0CAROL")
        await call("usergroups.users.update", usergroup="S0OTHER", users="U0CAROL")
        assert await connector.dm_channel("U0CAROL") == "D000CAROL"
        await connector.set_usergroup("S0123ABC", ["U2"])
        assert fake.usergroups["S0123ABC"] == ["U2"]
    finally:
        await connector.close()
    assert [s for _, s, _ in answers] == ["200", "default", "default", "200", "default"]
    for method, status, body in answers:
        schema = spec["paths"][f"/{method}"]["post"]["responses"][status]["schema"]
        validator = Draft4Validator({**schema, "definitions": spec["definitions"]})
        assert [e.message for e in validator.iter_errors(body)] == [], body


@SLACK_ONLY
async def test_a_topic_longer_than_slack_takes_is_cut_not_refused(
    tmp_path: Path, chat: SlackChat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    fake = chat.fake
    fake.usergroups["S0123ABC"] = []
    long_template = "IC: {ic} · Responders: {responders} · " + "escalate via #ops-help " * 20
    keep = {**KEEP, "topic_channels": {"slack:C0ONCALL": long_template}}
    app = await start(tmp_path, chat, pd, clock, **keep)
    try:
        [sent] = fake.posts("conversations.setTopic")
        assert len(sent["topic"]) <= 250  # Slack answers too_long past 250 characters
        assert sent["topic"].startswith("IC: Ada Lovelace") and sent["topic"].endswith("…")
        assert fake.channels["C0ONCALL"]["topic"] == sent["topic"]
    finally:
        await app.stop()
