"""Shift reminders by Mattermost direct message, end to end: the real connector
(aiohttp) against the fake Mattermost (POST /channels/direct as channels.yaml describes it),
the fake PagerDuty's timed shifts (spec-checked), an injected clock. Alice's PagerDuty email
is linked to her Mattermost id by `[pagerduty.users]`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import ALICE, BOT, TOKEN, FakeMattermost
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fixtures.mattermost import plain, server  # noqa: F401
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401

MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, server: FakeMattermost, clock: FakeClock
) -> AsyncIterator[App]:
    pd.now = clock.now
    pd.users["PALICE"] = FakeUser("PALICE", "Alice Liddell", "alice@example.com")
    pd.shifts["PRS1"] = [
        ("PEDS", 1, MON8, MON8 + DAY),
        ("PALICE", 1, MON8 + DAY, MON8 + 2 * DAY),
    ]
    config = make_config(
        tmp_path,
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
        console={"enabled": False},
        pagerduty=pd_section(
            pd,
            remind_before_minutes=[60],
            users={f"mattermost:{ALICE['id']}": "Alice@Example.com"},
        ),
    )
    running = App(config, clock=clock)
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    await first_refresh(running)
    yield running
    await running.stop()


async def refresh(app: App) -> None:
    assert app.part(OnCallRefresher) is not None
    await app.part(OnCallRefresher).refresh_job()


def direct(server: FakeMattermost) -> list[str]:
    dms = {cid for cid, c in server.channels.items() if c["type"] == "D"}
    return [plain(p["message"]) for p in server.bot_posts() if p["channel_id"] in dms]


async def test_a_reminder_is_one_direct_message_to_the_linked_person(
    app: App, server: FakeMattermost, clock: FakeClock
) -> None:
    await refresh(app)
    assert direct(server) == []
    clock.advance(19 * 3600 + 15 * 60)  # Tue 07:15: Alice starts on Payments at 08:00
    await refresh(app)
    await refresh(app)
    [message] = direct(server)
    assert "You're Payments primary from Tue 08:00 until Wed 08:00" in message
    assert "(handoff from Edsger Dijkstra)" in message
    [channel] = [c for c in server.channels.values() if c["type"] == "D"]
    assert sorted(server.members[channel["id"]]) == sorted([BOT["id"], ALICE["id"]])


ONCALL = "oncallchan0000000000000000"


@pytest.fixture
async def topic_app(
    tmp_path: Path, pd: FakePagerDuty, server: FakeMattermost, clock: FakeClock
) -> AsyncIterator[App]:
    pd.now = clock.now
    pd.shifts["PIC1"] = [("PADA", 1, MON8, MON8 + DAY), ("PGRACE", 1, MON8 + DAY, MON8 + 2 * DAY)]
    server.channels[ONCALL] = {"id": ONCALL, "type": "O", "name": "oncall", "header": ""}
    server.members[ONCALL] = [BOT["id"]]
    config = make_config(
        tmp_path,
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
        console={"enabled": False},
        pagerduty=pd_section(pd, topic_channels={f"mattermost:{ONCALL}": "IC: {ic}"}),
    )
    running = App(config, clock=clock)
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    await first_refresh(running)
    await refresh(running)
    yield running
    await running.stop()


async def test_the_channel_header_is_patched_once_per_change(
    topic_app: App, server: FakeMattermost, clock: FakeClock
) -> None:
    assert server.channel_patches == [(ONCALL, {"header": "IC: Ada Lovelace, Alan Turing"})]
    server.channels[ONCALL]["header"] = "edited by a person"
    await refresh(topic_app)
    assert len(server.channel_patches) == 1
    assert server.channels[ONCALL]["header"] == "edited by a person"
    clock.advance(20 * 3600 + 60)  # Tue 08:01: Grace
    await refresh(topic_app)
    assert server.channel_patches[-1] == (ONCALL, {"header": "IC: Grace Hopper, Alan Turing"})
    assert len(server.channel_patches) == 2
