"""A long Slack outage: the SDK's own reconnects give up to the supervisor's backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from chatopsd.connectors.base import Backoff, State, Supervisor
from chatopsd.connectors.slack import SlackConnector
from chatopsd.core.messages import Inbound
from tests.conftest import FakeClock
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    server = FakeSlack()
    await server.start()
    yield server
    await server.stop()


async def test_outage_goes_to_supervisor_backoff_then_recovers(
    fake: FakeSlack, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "chatopsd")
    connector = SlackConnector(
        app_token=APP_TOKEN,
        bot_token=BOT_TOKEN,
        api_url=fake.api_url,
        clock=clock,
        ping_interval=0.2,
        reconnect_grace=1.0,
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
        app_token=APP_TOKEN,
        bot_token=BOT_TOKEN,
        api_url=fake.api_url,
        clock=clock,
        ping_interval=0.1,
        connect_timeout=0.5,
    )

    class Session:
        def emit(self, event: Inbound) -> None:
            raise AssertionError("no events expected")

        def ready(self) -> None:
            raise AssertionError("must not be ready")

    with pytest.raises(ConnectionError, match="websocket not open"):
        await connector.run(Session())  # type: ignore[arg-type]
    await connector.close()
