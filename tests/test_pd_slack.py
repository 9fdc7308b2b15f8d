"""PagerDuty incidents in Slack, end to end: the real slack-sdk against the fake Slack, the
fake PagerDuty (spec-checked, From checked against its users), the poll run by the test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.features.pagerduty.cards import IncidentSync
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.pagerduty import (
    first_refresh,
    pd,  # noqa: F401 (fixtures)
    pd_section,
)
from tests.fixtures.slack import fake  # noqa: F401 (fixtures)


def config(tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack) -> Any:
    return make_config(
        tmp_path,
        console={"enabled": False},
        slack={"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": fake.api_url},
        pagerduty=pd_section(
            pd,
            service_ids=["PSVC1"],
            incident_channels=["slack:C1"],
            incident_poll_seconds=3600,  # the test polls
        ),
        roles={"oncall": ["*"]},
    )


async def start(tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack, clock: FakeClock) -> App:
    pd.now = clock.now
    # Jane (U1, jane@example.com) and Bob (U2) are PagerDuty users; Carol (U0CAROL) is not.
    pd.users["PJANE"] = FakeUser("PJANE", "Jane Doe", "jane@example.com")
    pd.users["PBOB"] = FakeUser("PBOB", "Bob Roe", "bob@example.com")
    app = App(config(tmp_path, pd, fake), clock=clock)
    await app.start()
    await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
    await first_refresh(app)
    return app


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack, clock: FakeClock
) -> AsyncIterator[App]:
    running = await start(tmp_path, pd, fake, clock)
    yield running
    await running.stop()


async def poll(app: App) -> None:
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).poll()


def cards(fake: FakeSlack, incident_id: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if f"pd resolve {incident_id}" in json.dumps(p)]


def updates(fake: FakeSlack) -> list[str]:
    return [json.dumps(p) for p in fake.posts("chat.update")]


async def test_new_incident_appears_once_with_buttons(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    pd.trigger("Checkout latency", assignees=["PADA"])
    await poll(app)
    await poll(app)
    posted = cards(fake, "PINC001")
    assert len(posted) == 1
    blob = json.dumps(posted[0])
    assert posted[0]["channel"] == "C1"
    assert "PagerDuty #1: Checkout latency" in blob
    assert '"value": "pd ack PINC001"' in blob and '"value": "pd resolve PINC001"' in blob


async def test_ack_by_button_names_the_clicker_in_chat_and_in_pagerduty(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    pd.trigger("Checkout latency", assignees=["PADA"])
    await poll(app)
    ts = fake.ts_of(cards(fake, "PINC001")[0])
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))
    update = next(json.loads(u) for u in updates(fake) if "acknowledged by Jane Doe" in u)
    assert update["ts"] == ts and update["channel"] == "C1"
    assert '"value": "pd ack PINC001"' not in json.dumps(update)  # acknowledged: no Ack button
    assert pd.writes == [("PUT", "/incidents/PINC001", "jane@example.com")]
    assert pd.incident("PINC001")["last_status_change_by"] == "PJANE"


async def test_resolve_in_pagerduty_edits_the_message_within_one_poll(
    app: App, fake: FakeSlack, pd: FakePagerDuty, clock: FakeClock
) -> None:
    pd.trigger("Checkout latency")
    await poll(app)
    clock.advance(300)
    pd.act("PINC001", "resolved", "PADA")  # someone pressed Resolve on their phone
    await poll(app)
    await fake.wait_for(
        lambda: any("resolved by Ada Lovelace at 12:05" in u for u in updates(fake))
    )
    assert len(cards(fake, "PINC001")) == 1


async def test_two_simultaneous_clicks_make_one_pagerduty_write(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    pd.trigger("Checkout latency")
    await poll(app)
    pd.gate = asyncio.Event()  # the first write stays in flight until both clicks are in
    await fake.click("pd ack PINC001", user="U1")
    await fake.wait_for(lambda: len(pd.from_emails) == 1)
    await fake.click("pd ack PINC001", user="U2")
    await fake.wait_for(lambda: len(fake.posts("chat.postEphemeral")) == 1)
    pd.gate.set()
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))
    loser = fake.posts("chat.postEphemeral")[0]
    assert loser["user"] == "U2" and "already acknowledged by Jane Doe" in json.dumps(loser)
    assert pd.writes == [("PUT", "/incidents/PINC001", "jane@example.com")]


async def test_a_user_pagerduty_does_not_know_is_refused(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    pd.trigger("Checkout latency")
    await poll(app)
    await fake.click("pd ack PINC001", user="U0CAROL")
    await fake.wait_for(lambda: len(fake.posts("chat.postEphemeral")) == 1)
    refusal = json.dumps(fake.posts("chat.postEphemeral")[0])
    assert "carol@example.com is not a PagerDuty user" in refusal and "pd link" in refusal
    assert pd.writes == [] and pd.from_emails == []
    assert pd.incident("PINC001")["status"] == "triggered"


async def test_take_and_handback_in_slack(app: App, fake: FakeSlack, pd: FakePagerDuty) -> None:
    await fake.event(fake.message("!ic take 1h"))
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    assert "Jane Doe has the pager on PIC1 until 13:00 UTC" in json.dumps(fake.posts()[0])
    assert "Ada Lovelace: you are off the pager" in json.dumps(fake.posts()[0])
    assert [o["user"]["id"] for o in pd.overrides.values()] == ["PJANE"]
    await fake.event(fake.message("!ic handback"))
    await fake.wait_for(lambda: len(fake.posts()) == 2)
    assert "removed" in json.dumps(fake.posts()[1]) and pd.overrides == {}


async def test_restart_between_poll_and_post(
    tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack, clock: FakeClock
) -> None:
    app = await start(tmp_path, pd, fake, clock)
    pd.trigger("Between polls")
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).decide()
    await app.stop()
    assert cards(fake, "PINC001") == []
    app = await start(tmp_path, pd, fake, clock)
    try:
        await poll(app)
        await poll(app)
        assert len(cards(fake, "PINC001")) == 1
    finally:
        await app.stop()


async def test_pagerduty_down_during_a_click_keeps_the_buttons(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    pd.trigger("Checkout latency")
    await poll(app)
    pd.fault, pd.fault_path = "hang", "/incidents/PINC001"
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: len(fake.posts()) == 2, timeout=15)
    assert "no answer from PagerDuty" in json.dumps(fake.posts()[-1])
    assert updates(fake) == []  # the card still offers Acknowledge
    rows = await app.audit.since(None)
    outcome = [r.outcome for r in rows if r.command == "pd ack"][-1]
    assert outcome == "failed", outcome
    pd.fault = None
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))


async def test_a_click_while_its_card_is_being_posted_posts_once_then_edits(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    pd.trigger("Checkout latency")
    fake.delay["chat.postMessage"] = 0.5  # Slack slow to accept the card
    assert app.part(IncidentSync) is not None
    polling = asyncio.ensure_future(app.part(IncidentSync).poll())
    await fake.wait_for(lambda: len(fake.posts()) == 1)  # the card's post is in flight
    assert pd.incident("PINC001")["status"] == "triggered"
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: len(pd.writes) == 1)
    await polling
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))
    assert len(cards(fake, "PINC001")) == 1
    assert pd.writes == [("PUT", "/incidents/PINC001", "jane@example.com")]


async def test_reassign_to_a_slack_mention(app: App, fake: FakeSlack, pd: FakePagerDuty) -> None:
    pd.trigger("Checkout latency", assignees=["PADA"])
    await poll(app)
    await fake.event(fake.message("!pd reassign 1 <@U2>"))
    await fake.wait_for(lambda: any("reassigned to Bob Roe" in json.dumps(p) for p in fake.posts()))
    assert pd.incident("PINC001")["assignees"] == ["PBOB"]
    assert pd.writes == [("PUT", "/incidents/PINC001", "jane@example.com")]
    await fake.wait_for(lambda: any("Bob Roe" in u for u in updates(fake)))  # the card too
