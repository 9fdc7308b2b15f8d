"""Shift reminders by Slack DM (issue 18), end to end: the real slack-sdk against the fake
Slack (conversations.open + chat.postMessage, answers checked against the published Web API
schema), the fake PagerDuty's timed shifts (spec-checked), an injected clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator
from slack_sdk.errors import SlackApiError

from chatopsd.app import App
from chatopsd.connectors.slack import SlackConnector
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.spec_files import vendored_spec
from tests.test_pagerduty import first_refresh, pd, pd_section  # noqa: F401
from tests.test_slack import fake  # noqa: F401

MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # the clock starts Monday 12:00 UTC
DAY = timedelta(days=1)
CAROL_DM = "D000CAROL"


def config(tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack) -> Any:
    return make_config(
        tmp_path,
        console={"enabled": False},
        slack={"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": fake.api_url},
        pagerduty=pd_section(
            pd,
            remind_before_minutes=[720, 60],
            users={"slack:U0CAROL": "carol@example.com"},
        ),
    )


async def start(tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack, clock: FakeClock) -> App:
    pd.now = clock.now
    pd.users["PCAROL"] = FakeUser("PCAROL", "Carol Poe", "carol@example.com")
    pd.shifts["PIC1"] = [
        ("PADA", 1, MON8, MON8 + DAY),
        ("PCAROL", 1, MON8 + DAY, MON8 + 2 * DAY),
        ("PGRACE", 1, MON8 + 2 * DAY, MON8 + 3 * DAY),  # Grace: no chat identity linked
    ]
    app = App(config(tmp_path, pd, fake), clock=clock)
    await app.start()
    await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
    await first_refresh(app)
    await refresh(app)
    return app


async def refresh(app: App) -> None:
    assert app.oncall_cache is not None
    await app.oncall_cache.refresh_job()


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack, clock: FakeClock
) -> AsyncIterator[App]:
    running = await start(tmp_path, pd, fake, clock)
    yield running
    await running.stop()


def dms(fake: FakeSlack) -> list[str]:
    return [str(p.get("text")) for p in fake.posts() if p.get("channel") == CAROL_DM]


async def test_reminders_at_each_threshold_exactly_once_across_a_restart(
    tmp_path: Path, app: App, pd: FakePagerDuty, fake: FakeSlack, clock: FakeClock
) -> None:
    assert dms(fake) == []  # Carol starts Tue 08:00: 20 h away, no threshold reached
    clock.advance(8 * 3600 + 30 * 60)  # Mon 20:30: within 720 minutes
    await refresh(app)
    await refresh(app)
    want = "You're IC Primary from Tue 08:00 until Wed 08:00 (handoff from Ada Lovelace)"
    assert len(dms(fake)) == 1 and want in dms(fake)[0], dms(fake)
    assert fake.dms == {CAROL_DM: "U0CAROL"}
    await app.stop()
    app2 = await start(tmp_path, pd, fake, clock)
    try:
        await refresh(app2)
        assert len(dms(fake)) == 1  # not again after a restart
        clock.advance(10 * 3600 + 45 * 60)  # Tue 07:15: within 60 minutes
        await refresh(app2)
        await refresh(app2)
        assert len(dms(fake)) == 2 and want in dms(fake)[1]
        clock.advance(3600)  # her shift has started: nothing more
        await refresh(app2)
        assert len(dms(fake)) == 2
    finally:
        await app2.stop()


async def test_a_late_start_sends_only_the_closest_threshold_and_a_failed_dm_stays_owed(
    app: App, fake: FakeSlack, clock: FakeClock
) -> None:
    clock.advance(19 * 3600 + 30 * 60)  # Tue 07:30: both thresholds reached at once
    fake.fail("conversations.open", 200, "user_disabled")  # a refused DM...
    with pytest.raises(RuntimeError, match="could not be sent"):
        await refresh(app)  # ...is a failure the scheduler counts
    assert dms(fake) == []
    await refresh(app)  # ...and is sent by the next run
    assert len(dms(fake)) == 1


SPEC = vendored_spec("slack", "web-api-openapi-v2.json")


@pytest.mark.skipif(not SPEC.exists(), reason="the Slack spec is not here")
async def test_conversations_open_answers_match_the_published_schema(
    fake: FakeSlack, clock: FakeClock
) -> None:
    connector = SlackConnector(
        app_token=APP_TOKEN, bot_token=BOT_TOKEN, api_url=fake.api_url, clock=clock
    )
    spec = json.loads(SPEC.read_text())
    answers: list[tuple[str, dict[str, Any]]] = []
    try:
        for users in ("U0CAROL", "U0NOBODY", ""):
            try:
                found = await connector.web().api_call(
                    "conversations.open", params={"users": users}
                )
                answers.append(("200", dict(found.data)))  # type: ignore[arg-type]
            except SlackApiError as exc:
                answers.append(("default", dict(exc.response.data)))  # type: ignore[arg-type]
        assert await connector.dm_channel("U0CAROL") == CAROL_DM
    finally:
        await connector.close()
    assert [s for s, _ in answers] == ["200", "default", "default"]
    for status, body in answers:
        schema = spec["paths"]["/conversations.open"]["post"]["responses"][status]["schema"]
        validator = Draft4Validator({**schema, "definitions": spec["definitions"]})
        assert [e.message for e in validator.iter_errors(body)] == [], body
