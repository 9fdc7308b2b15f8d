"""A burst of envelopes: each acknowledged once claimed, in time, and answered once; the
replies share kept-alive HTTP connections. The real App and slack-sdk against
tests/fakes/slack.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App
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


async def test_a_burst_is_acknowledged_in_time_and_answered_once(app: App, fake: FakeSlack) -> None:
    # The user lookup is slow, so the whole burst is in flight at once, as under load.
    fake.delay["users.info"] = 0.2
    ids = [await fake.event(fake.message("!help")) for _ in range(30)]
    await fake.wait_for(lambda: len(fake.posts()) >= 30, timeout=20)
    assert set(ids) <= set(fake.acks)
    assert all(fake.ack_times[i] - fake.sent_times[i] < 1.0 for i in ids)  # Slack allows 3 s
    assert not fake.violations
    rows = await app.audit.since(None)
    assert sorted(r.event_id for r in rows) == sorted(
        str(fake.sent_envelope(i)["payload"]["event_id"]) for i in ids
    )  # each claimed and handled once
    assert len(fake.posts()) == 30


async def test_replies_share_kept_alive_connections(app: App, fake: FakeSlack) -> None:
    for _ in range(20):
        before = len(fake.posts())
        await fake.event(fake.message("!help"))
        await fake.wait_for(lambda before=before: len(fake.posts()) > before)
    # 20 posts and a user lookup: one connection kept alive, not one per call
    assert len(fake.calls) > 20
    assert len(fake.api_peers) <= 2, fake.api_peers


async def test_a_claim_settled_past_the_ack_window_is_left_unacked(
    app: App, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The window within which a claimed envelope is still acked, cut to nothing: every
    # claim now settles too late, so the envelope stays unacked (Slack delivers it again and
    # the redelivery meets the claim) while the command itself is answered once.
    from chatopsd.connectors.slack import client as slack_client

    await fake.event(fake.message("!help"))  # warm: the user is cached, the direct path
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    monkeypatch.setattr(slack_client, "ACK_WAIT", -1.0)
    late = await fake.event(fake.message("!help"))
    await fake.wait_for(lambda: len(fake.posts()) == 2)
    assert late not in fake.acks
    assert "not claimed in time" in caplog.text
    assert len(await app.audit.since(None)) == 2  # claimed and handled once
