"""Stalkers are capped per channel and in total, and a top-level `!status unstalk` stops
every stalker of its channel. Mattermost used to give
every post its own thread, so 50 top-level `!status stalk` made 50 stalkers nobody could stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.features.status.stalkers import Stalkers
from tests.conftest import FakeClock
from tests.status_helpers import say, status_app


@pytest.fixture
async def app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    running, _ = await status_app(tmp_path, clock, [], max_stalkers_per_channel=3, max_stalkers=5)
    yield running
    await running.stop()


async def test_per_channel_cap_counts_threads_and_says_which_key(app: App) -> None:
    answers = []
    for n in range(50):  # as Mattermost delivered top-level posts: each its own thread
        [reply] = await say(app, "!status stalk", channel="town-square", thread=f"post{n}")
        answers.append(reply.text)
    assert len(app.part(Stalkers).stalkers) == 3
    refused = answers[3:]
    assert all("status.max_stalkers_per_channel" in text for text in refused)
    rows = await app.db.fetchall("SELECT COUNT(*) FROM stalkers")
    assert rows[0][0] == 3


async def test_top_level_unstalk_stops_the_channel_and_its_threads(app: App) -> None:
    await say(app, "!status stalk", channel="town-square")
    await say(app, "!status stalk", channel="town-square", thread="p1")
    await say(app, "!status stalk", channel="town-square", thread="p2")
    await say(app, "!status stalk", channel="other")
    [bye] = await say(app, "!status unstalk", channel="town-square")
    assert "3 stalkers" in bye.text
    assert [(s.channel, s.thread) for s in app.part(Stalkers).stalkers] == [("other", "")]
    rows = await app.db.fetchall("SELECT channel FROM stalkers")
    assert [r[0] for r in rows] == ["other"]


async def test_total_cap(app: App) -> None:
    for n in range(5):
        await say(app, "!status stalk", channel=f"c{n}")
    [reply] = await say(app, "!status stalk", channel="c9")
    assert "status.max_stalkers" in reply.text and len(app.part(Stalkers).stalkers) == 5
