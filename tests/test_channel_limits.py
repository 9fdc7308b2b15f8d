"""Channel limits cannot be side-stepped: a declare whose announcement
failed does not make the whole channel an incident channel, and slash commands in a DM obey
auth.paging_channels / mutating_channels like anything else."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from chatopsd.features.incidents.store import SqlIncidentStore
from tests.conftest import FakeClock, make_config
from tests.waiting import eventually


class RefusingTerminal(io.StringIO):
    """The console's output, refusing every post to one channel (a bot not in that channel)."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused

    def write(self, text: str) -> int:
        if f'"channel": "{self.refused}"' in text:
            raise OSError(f"not_in_channel: {self.refused}")
        return super().write(text)


@pytest.fixture
async def app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    config = make_config(
        tmp_path,
        console={"format": "jsonl"},
        auth={"paging_channels": ["console:incidents"], "mutating_channels": []},
    )
    running = App(config, clock=clock, io=Io(stdin=io.StringIO(""), stdout=RefusingTerminal("D1")))
    await running.start()
    yield running
    await running.stop()


async def run(app: App, text: str, channel: str, event_id: str) -> None:
    await app.bus.handle(
        Inbound("console", channel, Actor("ann", "ann"), text, kind="slash", event_id=event_id)
    )
    await eventually(lambda: not app.bus.in_flight, timeout=5)
    await app.outbox.flush(5)


async def test_failed_announcement_binds_no_channel_and_limits_still_apply(app: App) -> None:
    await run(app, 'incident declare --sev 3 "db slow"', "D1", "s1")
    [incident] = await app.part(SqlIncidentStore).open()
    assert await app.part(SqlIncidentStore).is_open_incident_channel("console", "D1") is False
    assert await app.part(SqlIncidentStore).incident_at("console", "D1", None) is None
    assert await app.part(SqlIncidentStore).home(incident.id) is None
    await run(app, "ic page", "D1", "s2")
    [row] = [r for r in await app.audit.since(None) if r.event_id == "s2"]
    assert row.outcome == "denied" and "pages people" in (row.cause or "")


async def test_slash_in_a_dm_obeys_the_paging_channels(app: App) -> None:
    await run(app, "ic page", "D9", "s3")
    await run(app, "ic page", "incidents", "s4")
    rows = {r.event_id: r.outcome for r in await app.audit.since(None)}
    assert rows["s3"].startswith("denied")
    assert not rows["s4"].startswith("denied")
    out = app.io.stdout
    assert out is not None
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any("not allowed here" in line["text"] and line["channel"] == "D9" for line in lines)
