"""A long Slack outage: the SDK's own reconnects give up to the supervisor's backoff."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from chatopsd.connectors.base import Backoff, State, Supervisor
from chatopsd.connectors.slack.client import SlackConnector, SlackSendError
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.core.errors import RateLimitedSend, TransientSendError
from chatopsd.core.messages import Destination, Inbound, Reply
from chatopsd.outbox import Outbox
from tests.conftest import FakeClock
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.slack import fake  # noqa: F401 (fixtures)


def section(fake: FakeSlack, **extra: Any) -> SlackSection:
    return SlackSection(app_token=APP_TOKEN, bot_token=BOT_TOKEN, api_url=fake.api_url, **extra)


async def test_outage_goes_to_supervisor_backoff_then_recovers(
    fake: FakeSlack, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "chatopsd")
    connector = SlackConnector(
        section(fake, ping_interval_seconds=0.2), clock=clock, reconnect_grace=1.0
    )
    seen: list[Inbound] = []

    def emit(event: Inbound) -> None:
        seen.append(event)

    supervisor = Supervisor(connector, emit, clock, backoff=Backoff(base=0.05, cap=0.2))
    task = asyncio.create_task(supervisor.run(), name="test:slack-supervisor")
    try:
        await asyncio.wait_for(supervisor.ready_event.wait(), 5)
        # Slack is down: the socket dies and no new one can be opened for a while.
        for _ in range(1000):
            fake.fail("apps.connections.open", 200, "internal_error")
        fake.drop()
        await fake.wait_for(lambda: supervisor.health.failures >= 1, timeout=5)
        assert supervisor.health.state in (State.BACKING_OFF, State.CONNECTING)
        assert "Socket Mode connection down" in caplog.text
        # Slack is back: the supervisor connects again and events flow.
        fake.scripted.clear()
        await fake.wait_for(lambda: supervisor.health.state is State.READY, timeout=5)
        await fake.event(fake.message("!help"), event_id="EvAfterOutage")
        await fake.wait_for(lambda: len(seen) == 1)
        assert seen[0].event_id == "EvAfterOutage"
        assert seen[0].actor.name == "Jane Doe"
        assert supervisor.health.connects == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await connector.close()


async def test_websocket_that_never_opens_is_a_connection_error(
    fake: FakeSlack, clock: FakeClock
) -> None:
    # apps.connections.open hands out a URL where nothing listens.
    fake.ws_url = "ws://127.0.0.1:9/link"
    connector = SlackConnector(
        section(fake, ping_interval_seconds=0.1), clock=clock, connect_timeout=0.5
    )

    class Session:
        def emit(self, event: Inbound) -> None:
            raise AssertionError("no events expected")

        def ready(self) -> None:
            raise AssertionError("must not be ready")

    with pytest.raises(ConnectionError, match="websocket not open"):
        await connector.run(Session())  # type: ignore[arg-type]
    await connector.close()


def _connector(fake: FakeSlack, clock: FakeClock) -> SlackConnector:
    return SlackConnector(section(fake), clock=clock, http_timeout=1)


async def test_send_timeout_is_transient(fake: FakeSlack, clock: FakeClock) -> None:
    fake.delay["chat.postMessage"] = 1.3
    connector = _connector(fake, clock)
    with pytest.raises(TransientSendError, match=r"chat\.postMessage"):
        await connector.send(Destination("slack", "C1"), Reply(text="hi"))


async def test_rate_limit_without_retry_after_is_retried(fake: FakeSlack, clock: FakeClock) -> None:
    # The outbox is the one layer that retries a post (the connector tries once).
    fake.fail("chat.postMessage", 429, "ratelimited")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    outbox = Outbox({"slack": _connector(fake, clock)}, sleep=sleep)
    try:
        sent = await outbox.send(Destination("slack", "C1"), Reply(text="hi"))
    finally:
        await outbox.close()
    assert sent is not None and sent.extra["channel"] == "C1"
    assert len(fake.posts()) == 2 and len(waits) == 1


async def test_the_connector_itself_does_not_retry_a_post(
    fake: FakeSlack, clock: FakeClock
) -> None:
    # A retry inside the connector would run inside each of the outbox's attempts.
    fake.fail("chat.postMessage", 429, "ratelimited", {"Retry-After": "0"})
    with pytest.raises(RateLimitedSend) as caught:
        await _connector(fake, clock).send(Destination("slack", "C1"), Reply(text="hi"))
    assert caught.value.retry_after == 0.0 and len(fake.posts()) == 1


@pytest.mark.parametrize(
    ("status", "error", "raised"),
    [
        (200, "not_in_channel", SlackSendError),
        (200, "channel_not_found", SlackSendError),
        (200, "internal_error", TransientSendError),
        (502, "bad_gateway", TransientSendError),
    ],
)
async def test_send_errors_are_classified(
    fake: FakeSlack, clock: FakeClock, status: int, error: str, raised: type[Exception]
) -> None:
    fake.fail("chat.postMessage", status, error)
    connector = _connector(fake, clock)
    with pytest.raises(raised, match=error):
        await connector.send(Destination("slack", "C1"), Reply(text="hi"))


async def test_edit_of_ephemeral_is_skipped(fake: FakeSlack, clock: FakeClock) -> None:
    connector = _connector(fake, clock)
    dest = Destination("slack", "C1", actor="U1")
    sent = await connector.send(dest, Reply(text="psst", ephemeral=True))
    assert sent is not None
    await connector.edit(sent, Reply(text="changed"))
    assert fake.posts("chat.update") == []
