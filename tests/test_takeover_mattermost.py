"""Taking over a dead instance's commands on Mattermost (the real connector, the fake server,
a real PostgreSQL): what the dead instance had already answered is found by the answer's key
on the post and not answered again; what it had not answered is answered once."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound, inbound_to_json
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import ALICE, BOT, CHANNEL, TOKEN, FakeMattermost
from tests.fixtures.mattermost import server  # noqa: F401 (fixtures)
from tests.waiting import eventually


@pytest.fixture
async def survivor(
    tmp_path: Path, server: FakeMattermost, pg_url: str, clock: FakeClock
) -> AsyncIterator[App]:
    config = make_config(
        tmp_path,
        chatopsd={"database": pg_url, "instance": "two", "lease_seconds": 5},
        console={"enabled": False},
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
    )
    app = App(config, clock=clock, io=Io(io.StringIO(""), io.StringIO()))
    await app.start()
    await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
    yield app
    await app.stop()


async def claimed_by_the_dead(app: App, server: FakeMattermost, text: str) -> str:
    """A user's command that instance "one" (dead: no heartbeat) claimed and never recorded
    as answered. The post is made without telling the survivor (it was seen long ago)."""
    post = server._store(ALICE["id"], CHANNEL, text, "", {})
    event = Inbound(
        "mattermost", CHANNEL, Actor(ALICE["id"], "alice"), text,
        event_id=post["id"], message_id=post["id"],
    )  # fmt: skip
    await app.db.write(
        "INSERT INTO events (platform, event_id, seen_at, instance, payload) "
        "VALUES ($1, $2, $3, $4, $5)",
        ("mattermost", post["id"], app.clock.now().timestamp(), "one:1", inbound_to_json(event)),
    )
    return str(post["id"])


def answers_to(server: FakeMattermost, post_id: str) -> list[dict[str, object]]:
    return [p for p in server.bot_posts() if p["root_id"] == post_id]


async def test_an_answer_the_dead_instance_posted_is_not_posted_again(
    survivor: App, server: FakeMattermost
) -> None:
    answered = await claimed_by_the_dead(survivor, server, "!help")
    # its answer went out (marked with the answer key), then it died before recording it
    server._store(
        BOT["id"], CHANNEL, "chatopsd commands …", answered, {"chatopsd_answer": f"{answered}#0"}
    )
    unanswered = await claimed_by_the_dead(survivor, server, "!help ic")

    await survivor.takeover.sweep()
    await eventually(lambda: len(answers_to(server, unanswered)) == 1)
    await survivor.bus.drain(5)
    assert len(answers_to(server, answered)) == 1  # only the dead instance's
    [mine] = answers_to(server, unanswered)
    assert mine["props"] == {"chatopsd_answer": f"{unanswered}#0"}
    assert survivor.takeover.resumed == 2
    rows = await survivor.db.fetchall(
        "SELECT done_at IS NOT NULL, payload IS NULL FROM events WHERE instance = $1",
        (survivor.lease.instance,),
    )
    assert [tuple(r) for r in rows] == [(True, True), (True, True)]  # both settled


async def test_when_the_lookup_fails_the_command_is_answered_rather_than_lost(
    survivor: App, server: FakeMattermost
) -> None:
    unanswered = await claimed_by_the_dead(survivor, server, "!help")
    server.since_failures = 5  # Mattermost cannot list the channel's posts right now
    await survivor.takeover.sweep()
    await eventually(lambda: len(answers_to(server, unanswered)) == 1)
