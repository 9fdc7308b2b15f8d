"""PagerDuty incidents on Discord, end to end (discord.py against the fake gateway and REST,
the fake PagerDuty spec-checked). Discord gives no email: an unlinked clicker is refused, then
`!pd link`, once an admin approved it, makes the same click act as that person."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.features.pagerduty.cards import IncidentSync
from tests.conftest import FakeClock, make_config
from tests.fakes.discord import CHANNEL_ID, FakeDiscord, Recorded
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.discord import (
    discord_config,
    fake,  # noqa: F401 (fixtures)
    text_of,
)
from tests.fixtures.pagerduty import (
    first_refresh,
    pd,  # noqa: F401 (fixtures)
    pd_section,
)


@pytest.fixture
async def app(
    tmp_path: Path, fake: FakeDiscord, pd: FakePagerDuty, clock: FakeClock
) -> AsyncIterator[App]:
    pd.now = clock.now
    base = discord_config(tmp_path, fake)
    config = make_config(
        tmp_path,
        discord=base.discord.model_dump() if base.discord else {},
        console={"enabled": False},
        pagerduty=pd_section(
            pd,
            service_ids=["PSVC1"],
            incident_channels=[f"discord:{CHANNEL_ID}"],
            incident_poll_seconds=3600,
        ),
        roles={"oncall": ["*"], "admin": ["discord:77"]},
    )
    running = App(config, clock=clock, io=Io(io.StringIO(""), io.StringIO()))
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    await first_refresh(running)
    yield running
    await running.stop()


async def seen(
    fake: FakeDiscord, log: list[Recorded], pred: Callable[[Recorded], bool]
) -> Recorded:
    """The first request (in `log` or still to come) that matches."""
    for rec in log:
        if pred(rec):
            return rec
    async with asyncio.timeout(5):
        while True:
            rec = await fake.next_post()
            log.append(rec)
            if pred(rec):
                return rec


async def test_discord_card_click_refused_until_linked_then_acts_as_the_person(
    app: App, fake: FakeDiscord, pd: FakePagerDuty
) -> None:
    log: list[Recorded] = []
    pd.trigger("Cache stampede", assignees=["PADA"])
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).poll()
    card = await seen(fake, log, lambda r: "pd ack PINC001" in json.dumps(r.body))
    assert card.method == "POST" and card.path == f"/channels/{CHANNEL_ID}/messages"
    assert "PagerDuty #1: Cache stampede" in text_of(card)
    await fake.dispatch("INTERACTION_CREATE", fake.click("pd ack PINC001"))
    refused = await seen(fake, log, lambda r: "PagerDuty user" in json.dumps(r.body))
    assert "pd link" in json.dumps(refused.body)
    assert pd.writes == []
    await fake.dispatch("MESSAGE_CREATE", fake.message("!pd link linus@example.com"))
    asked = await seen(fake, log, lambda r: "an admin must approve" in json.dumps(r.body))
    request = text_of(asked).split("(request ", 1)[1].split(",", 1)[0]
    await fake.dispatch("INTERACTION_CREATE", fake.click("pd ack PINC001"))
    still = await seen(fake, log, lambda r: "not confirmed yet" in json.dumps(r.body))
    assert "linus@example.com" in text_of(still) and pd.writes == []  # a claim grants nothing
    approve = fake.message(f"!approve {request}", author_id=77, name="root")
    await fake.dispatch("MESSAGE_CREATE", approve)
    await seen(fake, log, lambda r: "Linked: you act in PagerDuty as Linus" in json.dumps(r.body))
    await fake.dispatch("INTERACTION_CREATE", fake.click("pd ack PINC001"))
    edit = await seen(
        fake,
        log,
        lambda r: r.method == "PATCH" and "acknowledged by Linus Torvalds" in json.dumps(r.body),
    )
    assert edit.path.startswith(f"/channels/{CHANNEL_ID}/messages/")
    posts = [r for r in log if r.method == "POST" and "pd resolve PINC001" in json.dumps(r.body)]
    assert posts == [card]  # one card, edited in place
    assert pd.writes == [("PUT", "/incidents/PINC001", "linus@example.com")]


async def test_ic_page_on_discord_says_paging_at_once_then_edits_in_the_result(
    app: App, fake: FakeDiscord, pd: FakePagerDuty
) -> None:
    log: list[Recorded] = []
    await fake.dispatch("MESSAGE_CREATE", fake.message("!ic page"))
    notice = await seen(fake, log, lambda r: "Paging the Incident Commanders" in json.dumps(r.body))
    assert notice.method == "POST" and notice.path == f"/channels/{CHANNEL_ID}/messages"
    edit = await seen(fake, log, lambda r: r.method == "PATCH")
    assert edit.path.startswith(f"/channels/{CHANNEL_ID}/messages/")
    assert "Paged Ada Lovelace" in text_of(edit)  # the notice became the answer
    assert "incidents/PINC001" in json.dumps(edit.body)
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))  # a barrier: answered after
    await seen(fake, log, lambda r: "chatopsd commands" in json.dumps(r.body))
    answers = [r for r in log if r.method == "POST" and "Paged Ada" in json.dumps(r.body)]
    assert answers == []  # not posted a second time
    assert len(pd.incidents) == 1 and pd.incidents[0]["incident_key"].startswith(
        "chatopsd/discord/"
    )
