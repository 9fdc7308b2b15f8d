"""An incident's own channel lifts `auth.paging_channels` / `auth.mutating_channels` only for
incident and paging commands, and only until the incident is closed. Through the real
slack-sdk connector and the bus, against tests/fakes/slack.py: the channel is the one the
daemon created for the incident (conversations.create)."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.core.ports import AuditEntry
from tests.conftest import FakeClock, make_config
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.slack import (
    fake,  # noqa: F401 (fixtures)
    say,
    started,
)

LISTED = "C1"  # the only channel auth.paging_channels and auth.mutating_channels name
_ids = itertools.count(1)


@pytest.fixture
async def app(tmp_path: Path, fake: FakeSlack, clock: FakeClock) -> AsyncIterator[App]:
    noop = [sys.executable, "-c", "pass"]
    config = make_config(
        tmp_path,
        slack={"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": fake.api_url},
        console={"enabled": False},
        auth={"paging_channels": [f"slack:{LISTED}"], "mutating_channels": [f"slack:{LISTED}"]},
        # ops commands, one of them named like an incident command
        commands=[{"name": "deploy", "run": noop}, {"name": "incident rollback", "run": noop}],
        ratelimit={"burst": 100, "per_minute": 60},
    )
    running = await started(config, clock)
    yield running
    await running.stop()


async def run(app: App, fake: FakeSlack, text: str, channel: str) -> AuditEntry:
    """Send `text` in `channel` and return its audit row (written before any reply)."""
    event_id = f"EvLimit{next(_ids):04d}"
    await fake.event(fake.message(text, channel=channel), event_id=event_id)
    for _ in range(500):
        rows = [r for r in await app.audit.since(None) if r.event_id == event_id]
        if rows:
            return rows[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no audit row for {text!r}")


async def test_the_lists_are_lifted_for_incident_work_while_the_incident_is_open(
    app: App, fake: FakeSlack
) -> None:
    await say(fake, '!incident declare --sev 2 "Payments failing"', expect="declared (SEV-2)")
    [room] = fake.channels  # the incident's own channel, named in no list

    # incident and paging commands: allowed there while the incident is open
    update = await run(app, fake, "!incident update checking the database", room)
    assert update.outcome == "ok", update
    page = await run(app, fake, "!ic page the database team", room)
    assert page.outcome != "denied" and "pages people" not in (page.cause or ""), page

    # an ops command is not incident work, whatever its name
    for text in ("!deploy", "!incident rollback"):
        refused = await run(app, fake, text, room)
        assert refused.outcome == "denied", refused
        assert "not allowed in this channel" in (refused.cause or "")
    await fake.wait_for(
        lambda: any(
            p["channel"] == room and "auth.mutating_channels" in str(p["text"])
            for p in fake.posts("chat.postEphemeral")
        )
    )
    assert (await run(app, fake, "!deploy", LISTED)).outcome == "ok"  # where the list allows it

    # resolved still counts as open: it is closed from its own channel
    assert (await run(app, fake, "!incident resolve fixed the index", room)).outcome == "ok"
    assert (await run(app, fake, "!incident close", room)).outcome == "ok"

    # closed: the lists apply to incident and paging commands again
    after = await run(app, fake, "!incident followup add check the index size", room)
    assert after.outcome == "denied" and "not allowed in this channel" in (after.cause or "")
    page = await run(app, fake, "!ic page again", room)
    assert page.outcome == "denied" and "pages people" in (page.cause or ""), page
    listed = await run(app, fake, "!incident followup add INC-2026-0001 check it", LISTED)
    assert listed.outcome == "ok", listed
