"""Identity on Mattermost, end to end: the real connector (aiohttp) against the fake Mattermost
(users.yaml: `email_verified`, `is_bot`), the fake PagerDuty (spec-checked), an injected clock.

- Votes: a reaction counts only from someone Mattermost says is a person. A bot's ✅ never
  approves, even from a bot holding the role; a reactor the server could not look up is not
  counted either.
- Shift DMs: Bob's `!pd link` to Edsger's address sends him nothing of Edsger's until an
  admin approved it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.features.approvals.service import ApprovalService
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import ALICE, BOB, TOKEN, FakeMattermost
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.mattermost import plain, server  # noqa: F401
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401
from tests.waiting import eventually

MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # the clock starts Monday 12:00 UTC
DAY = timedelta(days=1)
ROBOT = {"id": "robot00000000000000000000a", "username": "deploybot", "is_bot": True}
CAROL = {"id": "carol00000000000000000000a", "username": "carol", "is_bot": False}


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, server: FakeMattermost, clock: FakeClock
) -> AsyncIterator[App]:
    pd.now = clock.now
    pd.shifts["PRS1"] = [("PEDS", 1, MON8 + DAY, MON8 + 2 * DAY)]  # Edsger, from Tue 08:00
    server.users.update({u["username"]: u for u in (ROBOT, CAROL)})
    config = make_config(
        tmp_path,
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
        console={"enabled": False},
        pagerduty=pd_section(pd, remind_before_minutes=[720, 60]),
        # the bot and Carol hold admin by their ids: only a person's vote may count
        roles={"admin": [f"mattermost:{u['id']}" for u in (ROBOT, CAROL, ALICE)]},
    )
    running = App(config, clock=clock)
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    await first_refresh(running)
    yield running
    await running.stop()


async def request_of(app: App, server: FakeMattermost) -> tuple[str, str]:
    """(request id, its message id) of Bob's pending link."""
    await eventually(
        lambda: any("Approval needed" in plain(p["message"]) for p in server.bot_posts())
    )
    for _ in range(500):
        [action] = await app.part(ApprovalService).store.pending()
        if action.message_id:
            return action.id, action.message_id
        await asyncio.sleep(0.01)
    raise AssertionError("the request message was never recorded")


async def barrier(app: App, server: FakeMattermost) -> None:
    """Everything sent before has been handled: one more command, answered."""
    before = len(server.bot_posts())
    await server.user_post("!help")
    await eventually(lambda: len(server.bot_posts()) > before and not app.bus.in_flight)


async def test_only_a_person_the_server_knows_can_vote(app: App, server: FakeMattermost) -> None:
    await server.user_post("!pd link edsger@example.com", user=BOB)
    request, message = await request_of(app, server)
    await server.reaction(message, "white_check_mark", user=ROBOT)
    server.user_failures.add(CAROL["id"])
    await server.reaction(message, "white_check_mark", user=CAROL)
    await barrier(app, server)
    action = await app.part(ApprovalService).store.get(request)
    assert action is not None and action.state == "pending" and action.approvers == ()
    assert ("GET", f"/api/v4/users/{ROBOT['id']}") in server.requests  # looked up: a bot
    server.user_failures.clear()
    await server.reaction(message, "heavy_check_mark", user=CAROL)  # now she can be looked up
    await eventually(
        lambda: any("Linked: you act" in plain(p["message"]) for p in server.bot_posts())
    )
    decided = await app.part(ApprovalService).store.get(request)
    assert decided is not None and decided.state == "approved"


def direct(server: FakeMattermost) -> list[str]:
    dms = {cid for cid, c in server.channels.items() if c["type"] == "D"}
    return [plain(p["message"]) for p in server.bot_posts() if p["channel_id"] in dms]


async def test_no_shift_message_reaches_an_unconfirmed_link(
    app: App, server: FakeMattermost, clock: FakeClock
) -> None:
    assert app.part(OnCallRefresher) is not None
    clock.advance(8 * 3600 + 15 * 60)  # Mon 20:15: Edsger starts within 12 h
    await server.user_post("!pd link edsger@example.com", user=BOB)
    request, _ = await request_of(app, server)
    await app.part(OnCallRefresher).refresh_job()
    await app.part(OnCallRefresher).refresh_job()
    assert direct(server) == []  # Bob's claim is not Edsger
    await server.user_post(f"!approve {request}")  # Alice, an admin
    await eventually(
        lambda: any("Linked: you act" in plain(p["message"]) for p in server.bot_posts())
    )
    clock.advance(11 * 3600)  # Tue 07:15: within the hour
    await app.part(OnCallRefresher).refresh_job()
    await app.part(OnCallRefresher).refresh_job()
    [message] = direct(server)
    assert "You're Payments primary from Tue 08:00" in message
