"""Slack end to end (real slack-sdk, fake Slack): another bot's reaction never acts, even on a
daemon that answers other bots' messages (`allow_bots`); a person's reaction does, through the
same checks as the typed command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.features.incidents.store import SqlIncidentStore
from tests.conftest import FakeClock
from tests.fakes import slack as slack_fake
from tests.fakes.slack import FakeSlack
from tests.fixtures.slack import slack_config, started

OTHER_BOT = "U0OTHERBOT"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    monkeypatch.setitem(
        slack_fake.USERS,
        OTHER_BOT,
        {"id": OTHER_BOT, "name": "deploybot", "is_bot": True, "profile": {"real_name": "bot"}},
    )
    server = FakeSlack()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def app(tmp_path: Path, fake: FakeSlack, clock: FakeClock) -> AsyncIterator[App]:
    running = await started(slack_config(tmp_path, fake, allow_bots=True), clock)
    yield running
    await running.stop()


async def settle(fake: FakeSlack) -> None:
    """One more command answered: everything sent before it was at least received."""
    before = len(fake.posts())
    await fake.event(fake.message("!help", user="U2"))
    await fake.wait_for(lambda: len(fake.posts()) > before)


async def react(fake: FakeSlack, user: str, ts: str, n: int) -> None:
    await fake.event(
        {
            "type": "reaction_added",
            "user": user,
            "reaction": "arrow_up",
            "item": {"type": "message", "channel": "C1", "ts": ts},
            "item_user": slack_fake.BOT_USER,
            "event_ts": f"1700000100.00000{n}",
        },
        event_id=f"EvReact{n}",
    )


async def test_only_people_react_an_incident_up(app: App, fake: FakeSlack) -> None:
    await fake.event(fake.message('!incident declare --sev 3 "db slow"'))
    await fake.wait_for(lambda: any("declared" in str(p.get("text")) for p in fake.posts()))
    [incident] = await app.part(SqlIncidentStore).open()
    [announce] = await app.part(SqlIncidentStore).messages(incident.id, "announce")

    await react(fake, OTHER_BOT, announce.message_id, 1)
    await settle(fake)
    still = await app.part(SqlIncidentStore).get(incident.id)
    assert still is not None and still.sev == "SEV-3"

    await react(fake, "U2", announce.message_id, 2)
    await settle(fake)
    # each event is its own task (user lookup, then the bus): wait for the reaction's row
    for _ in range(500):
        rows = [r for r in await app.audit.since(None) if r.kind == "reaction"]
        if rows:
            break
        await asyncio.sleep(0.01)
    await fake.wait_for(lambda: not app.bus.in_flight)
    await fake.wait_for(
        lambda: any(m == "users.info" and a.get("user") == OTHER_BOT for m, a, _ in fake.calls)
    )
    raised = await app.part(SqlIncidentStore).get(incident.id)
    assert raised is not None and raised.sev == "SEV-2"  # one step: the bot's did not count
    rows = [r for r in await app.audit.since(None) if r.kind == "reaction"]
    assert [(r.actor, r.command, r.outcome) for r in rows] == [("U2", "incident escalate", "ok")]


async def test_a_reactor_slack_could_not_look_up_does_not_count(app: App, fake: FakeSlack) -> None:
    """users.info failed for the reactor: not known to be a person, so not a vote."""
    await fake.event(fake.message('!incident declare --sev 3 "db slow"'))
    await fake.wait_for(lambda: any("declared" in str(p.get("text")) for p in fake.posts()))
    [incident] = await app.part(SqlIncidentStore).open()
    [announce] = await app.part(SqlIncidentStore).messages(incident.id, "announce")
    fake.user_failures.add("U0CAROL")
    await react(fake, "U0CAROL", announce.message_id, 3)
    await fake.wait_for(lambda: ("users.info", {"user": "U0CAROL"}) in [c[:2] for c in fake.calls])
    await settle(fake)
    await fake.wait_for(lambda: not app.bus.in_flight)
    still = await app.part(SqlIncidentStore).get(incident.id)
    assert still is not None and still.sev == "SEV-3"
    assert [r for r in await app.audit.since(None) if r.kind == "reaction"] == []
    fake.user_failures.clear()
    await react(fake, "U0CAROL", announce.message_id, 4)  # looked up now: a person
    for _ in range(500):
        raised = await app.part(SqlIncidentStore).get(incident.id)
        if raised is not None and raised.sev == "SEV-2":
            break
        await asyncio.sleep(0.01)
    assert raised is not None and raised.sev == "SEV-2"
