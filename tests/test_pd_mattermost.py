"""PagerDuty incidents in Mattermost, end to end: the real connector (aiohttp) against the
fake Mattermost, the fake PagerDuty (spec-checked). Mattermost buttons would need an HTTP
callback this daemon does not open, so a "click" is the command the card shows as a hint.
Alice's email comes from GET /users/{id} (verified by Mattermost); Bob's is hidden, so he must
link first, and an admin (Alice) approves the link before it counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.features.pagerduty.cards import IncidentSync
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import ALICE, BOB, CHANNEL, TOKEN, FakeMattermost
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fixtures.mattermost import (
    plain,
    server,  # noqa: F401 (fixtures)
)
from tests.fixtures.pagerduty import (
    first_refresh,
    pd,  # noqa: F401 (fixtures)
    pd_section,
)
from tests.waiting import eventually

CARDS = "cards00000000000000000000a"  # pagerduty.incident_channels


async def start(tmp_path: Path, pd: FakePagerDuty, server: FakeMattermost, clock: FakeClock) -> App:
    pd.now = clock.now
    pd.users["PALICE"] = FakeUser("PALICE", "Alice Liddell", "alice@example.com")
    config = make_config(
        tmp_path,
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
        console={"enabled": False},
        pagerduty=pd_section(
            pd,
            service_ids=["PSVC1"],
            incident_channels=[f"mattermost:{CARDS}"],
            incident_poll_seconds=3600,
        ),
        roles={"oncall": ["*"], "admin": [f"mattermost:{ALICE['id']}"]},
    )
    app = App(config, clock=clock)
    await app.start()
    await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
    await first_refresh(app)
    return app


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, server: FakeMattermost, clock: FakeClock
) -> AsyncIterator[App]:
    running = await start(tmp_path, pd, server, clock)
    yield running
    await running.stop()


def cards(server: FakeMattermost) -> list[dict[str, Any]]:
    return [p for p in server.bot_posts() if p["channel_id"] == CARDS]


def replies(server: FakeMattermost) -> list[str]:
    return [plain(p["message"]) for p in server.bot_posts() if p["channel_id"] == CHANNEL]


async def poll(app: App) -> None:
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).poll()


async def test_card_posted_once_acked_as_alice_and_resolved_out_of_band(
    app: App, server: FakeMattermost, pd: FakePagerDuty, clock: FakeClock
) -> None:
    pd.trigger("Search is slow", assignees=["PGRACE"])
    await poll(app)
    await poll(app)
    assert len(cards(server)) == 1
    card = plain(cards(server)[0]["message"])
    assert "PagerDuty #1: Search is slow" in card and "pd ack PINC001" in card
    await server.user_post("!pd ack 1")  # the card's Acknowledge hint, typed by Alice
    await eventually(lambda: "acknowledged by Alice Liddell" in plain(cards(server)[0]["message"]))
    assert pd.writes == [("PUT", "/incidents/PINC001", "alice@example.com")]
    assert ("GET", f"/api/v4/users/{'aliceid00000000000000000aa'}") in server.requests
    clock.advance(600)
    pd.act("PINC001", "resolved", "PGRACE")
    await poll(app)
    await eventually(
        lambda: "resolved by Grace Hopper at 12:10" in plain(cards(server)[0]["message"])
    )
    assert len(cards(server)) == 1


async def test_bob_without_an_email_is_refused_until_he_links(
    app: App, server: FakeMattermost, pd: FakePagerDuty
) -> None:
    pd.trigger("Search is slow")
    await poll(app)
    await server.user_post("!pd ack 1", user=BOB)
    await eventually(lambda: any("I don't know your PagerDuty user" in r for r in replies(server)))
    assert pd.writes == []
    await server.user_post("!pd link edsger@example.com", user=BOB)
    await eventually(lambda: any("an admin must approve" in r for r in replies(server)))
    [asked] = [r for r in replies(server) if "an admin must approve" in r]
    request = asked.split("(request ", 1)[1].split(",", 1)[0]
    await server.user_post(f"!approve {request}")  # Alice holds admin
    await eventually(
        lambda: any("Linked: you act in PagerDuty as Edsger" in r for r in replies(server))
    )
    await server.user_post("!pd whoami", user=BOB)
    await eventually(lambda: any("confirmed by an admin" in r for r in replies(server)))
    await server.user_post("!pd ack 1", user=BOB)
    await eventually(lambda: "acknowledged by Edsger" in plain(cards(server)[0]["message"]))
    assert pd.writes == [("PUT", "/incidents/PINC001", "edsger@example.com")]
    # Bob's hidden email was looked up once and cached, not once per command
    lookups = [r for r in server.requests if r == ("GET", f"/api/v4/users/{BOB['id']}")]
    assert len(lookups) == 1


async def test_take_and_handback_on_mattermost(
    app: App, server: FakeMattermost, pd: FakePagerDuty
) -> None:
    await server.user_post("!ic take 30m")
    await eventually(lambda: any("Pager taken" in r for r in replies(server)))
    assert [o["user"]["id"] for o in pd.overrides.values()] == ["PALICE"]
    await server.user_post("!ic handback")
    await eventually(lambda: any("Pager handed back" in r for r in replies(server)))
    assert pd.overrides == {}
