"""A burst of envelopes: each is acknowledged once claimed, the acknowledgements go out
before the commands act, and the replies share kept-alive HTTP connections. The real App
and slack-sdk against tests/fakes/slack.py; the acknowledgement gate also on the bus alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.core import context
from chatopsd.core.messages import Actor, Inbound
from tests.conftest import FakeClock
from tests.fakes.slack import FakeSlack
from tests.fixtures.slack import (
    fake,  # noqa: F401 (fixtures)
    slack_config,
    started,
)


@pytest.fixture
async def app(tmp_path: Path, fake: FakeSlack, clock: FakeClock) -> AsyncIterator[App]:
    config = slack_config(tmp_path, fake)
    # a burst from one user: the per-user rate limit is not what these tests are about
    config = config.model_copy(
        update={"ratelimit": config.ratelimit.model_copy(update={"per_minute": 1e6, "burst": 1e6})}
    )
    running = await started(config, clock)
    yield running
    await running.stop()


async def test_a_bursts_acks_all_go_out_before_any_of_its_commands_posts(
    app: App, fake: FakeSlack
) -> None:
    # The user lookup is slow, so the whole burst is in flight at once, as under load.
    fake.delay["users.info"] = 0.2
    ids = [await fake.event(fake.message("!help")) for i in range(30)]
    await fake.wait_for(lambda: len(fake.posts()) >= 30, timeout=20)
    assert set(ids) <= set(fake.acks)
    timeline = fake.timeline
    first_post = timeline.index(("api", "chat.postMessage"))
    last_ack = max(timeline.index(("ack", i)) for i in ids)
    assert last_ack < first_post, timeline
    assert all(fake.ack_times[i] - fake.sent_times[i] < 1.0 for i in ids)  # Slack allows 3 s
    assert not fake.violations
    rows = await app.audit.since(None)
    assert sorted(r.event_id for r in rows) == sorted(
        str(fake.sent_envelope(i)["payload"]["event_id"]) for i in ids
    )  # each claimed and handled once


async def test_replies_share_kept_alive_connections(app: App, fake: FakeSlack) -> None:
    for _ in range(20):
        before = len(fake.posts())
        await fake.event(fake.message("!help"))
        await fake.wait_for(lambda before=before: len(fake.posts()) > before)
    # 20 posts and a user lookup: one connection kept alive, not one per call
    assert len(fake.calls) > 20
    assert len(fake.api_peers) <= 2, fake.api_peers


def _event(event_id: str) -> Inbound:
    return Inbound("console", "ops", Actor("U1"), "!help", event_id=event_id)


async def test_an_admitted_command_acts_only_once_acknowledged(console_app: App) -> None:
    acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert await console_app.bus.admit(_event("E1"), acknowledged=acknowledged) is True  # claimed
    await asyncio.sleep(0.1)
    assert list(await console_app.audit.since(None)) == []  # claimed, not acted on yet
    acknowledged.set_result(None)
    await console_app.bus.drain(5)
    [row] = await console_app.audit.since(None)
    assert row.event_id == "E1" and row.outcome == "ok"


async def test_an_acknowledgement_that_never_comes_holds_the_command_briefly(
    console_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "ACK_HOLD", 0.05)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert await console_app.bus.admit(_event("E2"), acknowledged=never) is True
    await console_app.bus.drain(5)
    [row] = await console_app.audit.since(None)
    assert row.event_id == "E2" and row.outcome == "ok"
