"""Teams with several instances on one PostgreSQL database: every instance is a listener on
the same Hybrid Connection and the relay hands each request to one of them at random. A
command is answered once whichever instance gets it, a redelivery to the other instance is
not answered again (the claim is recorded before the relay is answered), and any instance can
post where another one heard (conversation references in the shared store)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.connectors.teams.connector import TeamsConnector
from chatopsd.core.messages import Destination, Reply
from chatopsd.core.ports import SystemClock
from tests.conftest import make_config
from tests.fakes import teams_bot
from tests.fakes.teams_bot import FakeBotService
from tests.fakes.teams_relay import FakeRelay
from tests.teams_helpers import raw_section

COMMANDS = 30


@pytest.fixture
async def instances(
    tmp_path: Path, relay: FakeRelay, bot: FakeBotService, pg_url: str
) -> AsyncIterator[list[App]]:
    apps: list[App] = []
    for name in ("teams-a", "teams-b"):
        cfg = make_config(
            tmp_path / name,
            chatopsd={"database": pg_url, "instance": name},
            teams=raw_section(relay.listen_url, bot.section()),
            ratelimit={"per_minute": 1e6, "burst": 10**6},
        )
        app = App(cfg, clock=SystemClock())
        await app.start()
        apps.append(app)
    await relay.wait_listeners(2)
    yield apps
    for app in apps:
        await app.stop()


def accepted(app: App) -> int:
    connector = app.supervisors[0].connector
    assert isinstance(connector, TeamsConnector)
    return connector.pipeline.counts["accepted"]


async def until(cond: Callable[[], Any], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_each_command_answered_once_across_instances_even_when_redelivered(
    instances: list[App], relay: FakeRelay, bot: FakeBotService
) -> None:
    activities = [bot.activity("<at>chatopsd</at> help") for _ in range(COMMANDS)]
    for activity in activities:
        for _ in range(2):  # delivered, then delivered again (to whichever instance)
            status, *_ = await bot.post_activity(relay.endpoint, activity)
            assert status == 200
    threads = {f"{teams_bot.CHANNEL};messageid={a['id']}" for a in activities}
    await until(lambda: {p[1] for p in bot.activities if p[0] == "SEND"} >= threads)
    await asyncio.sleep(0.5)  # a second answer would have come by now
    answers = Counter(p[1] for p in bot.activities if p[0] == "SEND")
    assert set(answers) == threads and set(answers.values()) == {1}
    # both instances were given requests by the relay: the claims did the deduplicating
    # (60 requests at random: all on one instance has a chance of 2 in 10^18)
    assert all(accepted(app) > 0 for app in instances)
    assert sum(accepted(app) for app in instances) == 2 * COMMANDS


async def test_any_instance_posts_where_another_one_heard(
    instances: list[App], relay: FakeRelay, bot: FakeBotService
) -> None:
    status, *_ = await bot.post_activity(relay.endpoint, bot.activity("hello"))
    assert status == 200
    for app in instances:
        sent = await app.outbox.send(Destination("teams", teams_bot.CHANNEL), Reply(text="SEV-2"))
        assert sent is not None
    assert len(bot.conversations) == 2
