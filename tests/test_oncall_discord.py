"""Shift reminders by Discord DM, end to end: discord.py against the fake gateway and
REST (POST /users/@me/channels, then a message in that DM channel), the fake PagerDuty's timed
shifts (spec-checked), an injected clock. Discord gives no email: the link is in config."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from tests.conftest import FakeClock, make_config
from tests.fakes.discord import CHANNEL_ID, FakeDiscord, Recorded
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fixtures.discord import discord_config, fake, text_of  # noqa: F401
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401

MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ZOE = "424242424242"


@pytest.fixture
async def app(
    tmp_path: Path, fake: FakeDiscord, pd: FakePagerDuty, clock: FakeClock
) -> AsyncIterator[App]:
    pd.now = clock.now
    pd.users["PZOE"] = FakeUser("PZOE", "Zoe Zed", "zoe@example.com")
    pd.shifts["PIC1"] = [("PADA", 1, MON8, MON8 + DAY), ("PZOE", 1, MON8 + DAY, MON8 + 2 * DAY)]
    base = discord_config(tmp_path, fake)
    config = make_config(
        tmp_path,
        discord=base.discord.model_dump() if base.discord else {},
        console={"enabled": False},
        pagerduty=pd_section(
            pd, remind_before_minutes=[60], users={f"discord:{ZOE}": "zoe@example.com"}
        ),
    )
    running = App(config, clock=clock, io=Io(io.StringIO(""), io.StringIO()))
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    await first_refresh(running)
    yield running
    await running.stop()


async def test_a_reminder_opens_a_dm_and_posts_there_once(
    app: App, fake: FakeDiscord, clock: FakeClock
) -> None:
    assert app.part(OnCallRefresher) is not None
    clock.advance(19 * 3600 + 30 * 60)  # Tue 07:30: Zoe starts at 08:00
    await app.part(OnCallRefresher).refresh_job()
    await app.part(OnCallRefresher).refresh_job()
    dm = fake.dm_channels[ZOE]
    found: list[Recorded] = []
    async with asyncio.timeout(5):
        while not found:
            rec = await fake.next_post()
            if rec.path == f"/channels/{dm}/messages":
                found.append(rec)
    assert "You're IC Primary from Tue 08:00 until Wed 08:00" in text_of(found[0])
    assert "handoff from Ada Lovelace" in text_of(found[0])
    await app.part(OnCallRefresher).refresh_job()
    assert fake.posted.empty()  # nothing more


@pytest.fixture
async def topic_app(
    tmp_path: Path, fake: FakeDiscord, pd: FakePagerDuty, clock: FakeClock
) -> AsyncIterator[App]:
    pd.now = clock.now
    pd.shifts["PIC1"] = [("PADA", 1, MON8, MON8 + DAY), ("PGRACE", 1, MON8 + DAY, MON8 + 2 * DAY)]
    base = discord_config(tmp_path, fake)
    config = make_config(
        tmp_path,
        discord=base.discord.model_dump() if base.discord else {},
        console={"enabled": False},
        pagerduty=pd_section(pd, topic_channels={f"discord:{CHANNEL_ID}": "IC: {ic}"}),
    )
    running = App(config, clock=clock, io=Io(io.StringIO(""), io.StringIO()))
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    await first_refresh(running)
    assert running.part(OnCallRefresher) is not None
    await running.part(OnCallRefresher).refresh_job()
    yield running
    await running.stop()


async def test_the_channel_topic_is_modified_once_per_change(
    topic_app: App, fake: FakeDiscord, clock: FakeClock
) -> None:
    assert topic_app.part(OnCallRefresher) is not None
    channel = str(CHANNEL_ID)
    assert fake.topics[channel] == "IC: Ada Lovelace, Alan Turing"
    fake.topics[channel] = "edited by a person"
    await topic_app.part(OnCallRefresher).refresh_job()
    assert fake.topics[channel] == "edited by a person"
    clock.advance(20 * 3600 + 60)  # Tue 08:01: Grace
    await topic_app.part(OnCallRefresher).refresh_job()
    assert fake.topics[channel] == "IC: Grace Hopper, Alan Turing"
