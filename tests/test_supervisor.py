"""The connector supervisor: backoff with full jitter, capped, reset when stable; fatal stops."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from chatopsd.connectors.base import Backoff, Session, State, Supervisor
from chatopsd.core.errors import FatalConnectorError
from chatopsd.core.messages import Actor, Destination, Inbound, Reply, Sent
from tests.conftest import FakeClock


class Scripted:
    """A connector whose every run follows the next step of a script."""

    platform = "scripted"

    def __init__(self, clock: FakeClock, steps: list[tuple[str, float]]) -> None:
        self.clock, self.steps, self.runs = clock, list(steps), 0

    async def run(self, session: Session) -> None:
        self.runs += 1
        action, seconds = self.steps.pop(0) if self.steps else ("hang", 0)
        if action == "hang":
            await asyncio.Event().wait()
        if action == "fatal":
            raise FatalConnectorError("invalid_auth: the bot token was revoked")
        if action == "fail":
            raise ConnectionError("connection refused")
        session.ready()  # "up": stays connected for `seconds`, emits one event, then drops
        session.emit(Inbound(self.platform, "c", Actor("u"), "!ic", event_id=str(self.runs)))
        self.clock.advance(seconds)

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        return None

    async def edit(self, sent: Sent, reply: Reply) -> None:
        return None

    async def close(self) -> None:
        return None


async def run_until_hang(sup: Supervisor, conn: Scripted, steps: int) -> None:
    task = asyncio.create_task(sup.run())
    while conn.runs <= steps:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_full_jitter_is_capped() -> None:
    backoff, rng = Backoff(base=1, cap=60), random.Random(7)
    for attempt in range(40):
        delay = backoff.delay(attempt, rng)
        assert 0 <= delay <= min(60, 2**attempt)
    assert max(backoff.delay(30, rng) for _ in range(200)) > 30  # the cap is reachable


async def test_backoff_grows_then_resets_after_a_stable_connection(clock: FakeClock) -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    conn = Scripted(clock, [("fail", 0)] * 6 + [("up", 120), ("fail", 0)])
    events: list[Inbound] = []

    def emit(event: Inbound) -> None:
        events.append(event)

    sup = Supervisor(
        conn, emit, clock, Backoff(base=1, cap=60, stable_after=60), random.Random(1), sleep
    )
    await run_until_hang(sup, conn, 8)
    assert len(delays) == 8
    ceilings = [2, 4, 8, 16, 32, 60]  # attempts 1..6
    assert all(d <= c for d, c in zip(delays[:6], ceilings, strict=True))
    assert delays[6] <= 1  # the 120 s connection was stable: back to attempt 0
    assert sup.health.connects == 1 and sup.health.failures == 8
    assert [e.event_id for e in events] == ["7"]
    assert sup.health.state is State.STOPPED  # cancelled while the last run hung


async def test_fatal_error_stops_retrying_and_says_why(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    conn = Scripted(clock, [("fail", 0), ("fatal", 0)])

    async def sleep(seconds: float) -> None:
        return None

    sup = Supervisor(conn, lambda e: None, clock, sleep=sleep)
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(sup.run(), 5)
    assert conn.runs == 2
    assert sup.health.state is State.FAILED
    assert "invalid_auth" in sup.health.reason
    assert "scripted stopped: invalid_auth: the bot token was revoked" in caplog.text


async def test_outage_logs_a_few_lines_not_one_per_attempt(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def sleep(seconds: float) -> None:
        clock.advance(1.0)  # an outage retried about once a second

    conn = Scripted(clock, [("fail", 0)] * 120)
    sup = Supervisor(conn, lambda e: None, clock, Backoff(base=1, cap=1), sleep=sleep)
    with caplog.at_level(logging.WARNING, logger="chatopsd.connector"):
        await run_until_hang(sup, conn, 120)
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert 3 <= len(lines) <= 5  # ~2 minutes of outage, one line per 30 s
    assert "more since last report" in lines[-1].getMessage()


async def test_a_connection_the_library_mends_shows_in_health(clock: FakeClock) -> None:
    conn = Scripted(clock, [])
    sup = Supervisor(conn, lambda e: None, clock)
    sup.ready()
    assert sup.health.state is State.READY and sup.ready_event.is_set()
    sup.lost("gateway connection lost; resuming")
    assert sup.health.state is State.CONNECTING and not sup.ready_event.is_set()
    assert sup.health.reason == "gateway connection lost; resuming"
    assert sup.health.failures == 0  # not a restart of the connector
    sup.ready()
    assert sup.health.state is State.READY and sup.health.connects == 2
