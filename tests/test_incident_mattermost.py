"""Incidents end to end on Mattermost, what is Mattermost's own: the channel's team, type and
purpose, the post patched in place, invites, both names taken, Retry-After past the limit, the
catch-up after an outage. What every platform with incident channels does is one scenario
file, tests/test_incident_channels.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.connectors.mattermost.client import MattermostConnector
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import BOB, BOT, CHANNEL, TEAM, TOKEN, FakeMattermost
from tests.fixtures.mattermost import (
    plain,
    server,  # noqa: F401 (fixtures)
)
from tests.waiting import eventually

ANNOUNCE = "announce000000000000000000"  # where SEV-2 incidents are announced
NAME = "inc-20261123-payments-failing"  # FakeClock's day
INC = "INC-2026-0001"


def posts_in(server: FakeMattermost, channel: str) -> list[dict[str, Any]]:
    return [p for p in server.bot_posts() if p["channel_id"] == channel]


def said(server: FakeMattermost, channel: str, text: str) -> list[dict[str, Any]]:
    return [p for p in posts_in(server, channel) if text in plain(p["message"])]


@pytest.fixture
async def app(server: FakeMattermost, tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    config = make_config(
        tmp_path,
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
        console={"enabled": False},
        incidents={"routing": {"SEV-2": [f"mattermost:{ANNOUNCE}"]}},
    )
    application = App(config, clock=clock)
    await application.start()
    await asyncio.wait_for(application.supervisors[0].ready_event.wait(), 5)
    connector = application.supervisors[0].connector
    assert isinstance(connector, MattermostConnector)
    connector.admin_max_wait = 1.0
    yield application
    await application.stop()


def connector_of(app: App) -> MattermostConnector:
    connector = app.supervisors[0].connector
    assert isinstance(connector, MattermostConnector)
    return connector


async def declare(server: FakeMattermost) -> str:
    """Declare the payments incident in CHANNEL; the bot's reply, as read."""
    await server.user_post('!incident declare --sev 2 "Payments failing"')
    await eventually(lambda: said(server, CHANNEL, f"{INC} declared"))
    return plain(said(server, CHANNEL, f"{INC} declared")[0]["message"])


def created(server: FakeMattermost, name: str = NAME) -> dict[str, Any]:
    [channel] = [c for c in server.channels.values() if c["name"] == name]
    return channel


def patches_of(server: FakeMattermost, post_id: str) -> int:
    return server.requests.count(("PUT", f"/api/v4/posts/{post_id}/patch"))


async def test_the_incident_channel_is_public_in_the_team_watched_and_edited(
    server: FakeMattermost, app: App
) -> None:
    # what every platform does is in tests/test_incident_channels.py; this is Mattermost's
    await declare(server)
    channel = created(server)
    cid = channel["id"]
    assert channel["team_id"] == TEAM["id"] and channel["type"] == "O"
    assert channel["purpose"] == f"{INC} [SEV-2] Payments failing"
    assert channel["display_name"] == channel["purpose"]
    # the new channel is watched (caught up after an outage like the others)
    assert cid in connector_of(app)._cursors
    [status] = posts_in(server, cid)
    await server.user_post(f"!incident update {INC} rolled back the deploy")
    await eventually(
        lambda: "rolled back the deploy" in plain(server.posts[status["id"]]["message"])
    )
    assert server.posts[status["id"]]["edit_at"] > 0


async def test_both_names_taken_says_why(server: FakeMattermost, app: App) -> None:
    server.taken_names |= {NAME, f"{NAME}-0001"}
    reply = await declare(server)
    assert f"could not create #{NAME}: a channel named {NAME} already exists" in reply
    assert "Incident thread" in reply


async def test_rate_limited_for_good_falls_back(server: FakeMattermost, app: App) -> None:
    server.admin_failures += [(429, {"Retry-After": "0.05"})] * 6
    reply = await declare(server)
    assert "Incident thread" in reply and "rate limited" in reply


async def test_5xx_on_pin_retried(server: FakeMattermost, app: App) -> None:
    server.pin_failures.append((503, {}))
    reply = await declare(server)
    assert "Could not pin" not in reply
    assert server.pinned == [posts_in(server, created(server)["id"])[0]["id"]]
    assert server.requests.count(("POST", f"/api/v4/posts/{server.pinned[0]}/pin")) == 2


async def test_5xx_and_429_on_invite_retried(server: FakeMattermost, app: App) -> None:
    await declare(server)  # warm: the team is known
    cid = created(server)["id"]
    server.admin_failures += [(503, {}), (429, {})]
    await server.user_post(f"!incident commander {INC} @bob")
    await eventually(lambda: BOB["id"] in server.members[cid], timeout=8)
    await eventually(lambda: said(server, CHANNEL, "Incident Commander of"))
    assert "Could not invite" not in plain(
        said(server, CHANNEL, "Incident Commander of")[0]["message"]
    )


async def test_pin_and_invite_refused_are_reported(server: FakeMattermost, app: App) -> None:
    server.refuse_pins = True
    server.refuse_invites = True
    reply = await declare(server)
    assert f"Incident channel: #{NAME}" in reply
    assert "Could not invite alice: could not add" in reply and "HTTP 403" in reply
    assert "Could not pin the status message: Mattermost refused to pin the post (HTTP 403" in reply
    assert server.members[created(server)["id"]] == [BOT["id"]]


async def test_unknown_user_invite_is_reported(server: FakeMattermost, app: App) -> None:
    await declare(server)
    await server.user_post(f"!incident scribe {INC} @nobody")
    await eventually(lambda: said(server, CHANNEL, "Scribe of"))
    msg = plain(said(server, CHANNEL, "Scribe of")[0]["message"])
    assert "Could not invite them to the incident channel: could not add nobody (HTTP 404" in msg


async def test_command_in_incident_channel_caught_up_after_outage(
    server: FakeMattermost, app: App
) -> None:
    await declare(server)
    cid = created(server)["id"]
    server.drop()
    server.forget_connections()  # the post below only comes back through the REST catch-up
    await server.user_post("!incident status", channel=cid)
    await eventually(
        lambda: said(server, cid, "State: declared") and len(posts_in(server, cid)) == 2, timeout=8
    )


async def test_new_channel_watched_before_any_post(server: FakeMattermost, app: App) -> None:
    # Posts there reach us live and move the cursor anyway; this covers the gap before the
    # first one, when an outage must still catch the channel up.
    connector = connector_of(app)
    cid = await connector.create_channel("inc-quiet", "INC-2026-0009 [SEV-4] quiet")
    assert connector._cursors[cid] == server.channels[cid]["create_at"]
    assert server.channels[cid]["header"] == "INC-2026-0009 [SEV-4] quiet"


async def test_a_hostile_title_is_inert_in_header_and_purpose(
    server: FakeMattermost, app: App
) -> None:
    title = "INC-1 [SEV-1] \x1b[31mred\x1b[0m @channel ![x](http://127.0.0.1/t.png)\nnext\u202e"
    cid = await connector_of(app).create_channel("inc-hostile", title)
    channel = server.channels[cid]
    for key in ("header", "purpose", "display_name"):
        assert "\x1b" not in channel[key] and "\n" not in channel[key]
        assert "\u202e" not in channel[key]
    assert "](" not in channel["header"] and "@\u200bchannel" in channel["header"]
    assert channel["header"].startswith("INC-1 [SEV-1] [31mred[0m")
