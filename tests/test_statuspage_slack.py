"""The status page, follow-ups and bridge on Slack end to end: the real App and slack-sdk
against tests/fakes/slack.py, with the Statuspage and GitHub fakes validating every request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.features.incidents.commands import IncidentHandler
from chatopsd.features.statuspage.commands import PublicStatus
from tests.conftest import FakeClock, make_config
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.statuspage import API_KEY, PAGE_ID, FakeStatuspage
from tests.fakes.tickets import TOKEN, FakeTrackers
from tests.fixtures.slack import (
    PING,
    fake,  # noqa: F401 (fixtures)
    say,
    started,
)

INC = "INC-2026-0001"


@pytest.fixture
async def page() -> AsyncIterator[FakeStatuspage]:
    server = FakeStatuspage()
    await server.start()
    yield server
    await server.close()
    assert server.violations == []


@pytest.fixture
async def trackers() -> AsyncIterator[FakeTrackers]:
    server = FakeTrackers()
    await server.start()
    yield server
    await server.close()
    assert server.violations == []


@pytest.fixture
async def app(
    tmp_path: Path,
    fake: FakeSlack,
    page: FakeStatuspage,
    trackers: FakeTrackers,
    clock: FakeClock,
) -> AsyncIterator[App]:
    config = make_config(
        tmp_path,
        slack={
            "app_token": APP_TOKEN,
            "bot_token": BOT_TOKEN,
            "api_url": fake.api_url,
            "ping_interval_seconds": PING,
        },
        console={"enabled": False},
        ratelimit={"burst": 100},
        roles={"statuspage": ["slack:U1"]},  # Jane may post public text
        incidents={"bridge_url": "https://meet.example.com/{incident_id}"},
        statuspage={
            "api_url": page.url,
            "api_key": API_KEY,
            "page_id": PAGE_ID,
            "components": {"payments": "cmp_pay"},
            "auto_publish": ["SEV-1"],
        },
        tickets={"kind": "github", "url": trackers.url, "token": TOKEN, "project": "acme/infra"},
    )
    running = await started(config, clock)
    yield running
    await running.stop()


async def test_incident_on_slack_with_status_page_bridge_followups_and_a_pin(
    app: App, fake: FakeSlack, page: FakeStatuspage, trackers: FakeTrackers, clock: FakeClock
) -> None:
    await say(
        fake, '!incident declare --sev 1 "Payments failing" --service payments', expect="declared"
    )
    [channel] = fake.channels
    # the bridge link is posted in the incident's channel and pinned beside the status
    await fake.wait_for(lambda: len(fake.pins.get(channel, [])) == 2)
    bridge = next(p for p in fake.posts() if "Video bridge" in str(p["text"]))
    assert bridge["channel"] == channel
    assert f"https://meet.example.com/{INC}" in str(bridge["text"])
    assert fake.ts_of(bridge) in fake.pins[channel]

    # SEV-1: published without anyone asking; the pinned status shows the link
    await app.part(PublicStatus).drain()
    [created] = page.calls("POST")
    assert created["incident"]["components"] == {"cmp_pay": "major_outage"}
    await fake.wait_for(
        lambda: any("stspg.io/fake1" in str(u.get("text")) for u in fake.posts("chat.update"))
    )
    await fake.wait_for(
        lambda: any("Status page: published" in str(p["text"]) for p in fake.posts())
    )

    # in the incident's channel the id can be left out; a 500 is said there and retried
    page.fault = "500"
    clock.advance(1)
    await say(
        fake, '!incident update --public "We are rolling back"', channel=channel, expect="updated"
    )
    await app.part(PublicStatus).drain()
    await fake.wait_for(
        lambda: any(
            p["channel"] == channel and "could not send the update (HTTP 500" in str(p["text"])
            for p in fake.posts()
        )
    )
    clock.advance(2)
    await app.part(PublicStatus).drain()
    assert [c["incident"]["body"] for c in page.calls("PATCH")] == ["We are rolling back"]
    await say(fake, "!incident update internal only", channel=channel, expect="updated")
    clock.advance(5)
    await app.part(PublicStatus).drain()
    assert len(page.calls("PATCH")) == 1

    # 📌 on a message in the incident's channel: into the timeline
    await fake.event(
        {
            "type": "reaction_added",
            "user": "U1",
            "reaction": "pushpin",
            "item": {"type": "message", "channel": channel, "ts": "1700000000.000042"},
            "event_ts": "1700000001.000001",
        },
        event_id="EvPin1",
    )

    await fake.wait_for(
        lambda: any(
            "Added to the timeline" in str(p.get("text")) for p in fake.posts("chat.postEphemeral")
        )
    )
    timeline = await app.part(IncidentHandler).store.timeline(INC)
    [pin] = [e for e in timeline if e.kind == "pinned"]
    assert pin.text == "📌 message 1700000000.000042" and pin.platform == "slack"

    for n in range(3):
        await say(fake, f"!incident followup add fix {n}", channel=channel, expect="follow-up")
    clock.advance(1)
    await say(fake, "!incident resolve rolled back", channel=channel, expect="resolved")
    await app.part(PublicStatus).drain()
    assert page.incidents["spinc1"]["status"] == "resolved"
    assert page.components["cmp_pay"] == "operational"
    await say(fake, "!incident close", channel=channel, expect="closed")
    await fake.wait_for(lambda: any("Tickets for" in str(p["text"]) for p in fake.posts()))
    assert len(trackers.github) == 3
    await say(fake, "!incident close", channel=channel, expect="is closed")
    assert len(trackers.github) == 3
