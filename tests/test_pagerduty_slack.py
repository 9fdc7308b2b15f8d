"""`!ic` on a chat platform: Slack (real slack-sdk, fake Slack) + PagerDuty (fake, spec-checked)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.pagerduty import (
    DEADLINE,
    first_refresh,
    pd,  # noqa: F401 (fixtures)
    pd_section,
)
from tests.fixtures.slack import fake  # noqa: F401 (fixtures)


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, fake: FakeSlack, clock: FakeClock
) -> AsyncIterator[App]:
    config = make_config(
        tmp_path,
        console={"enabled": False},
        slack={"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": fake.api_url},
        pagerduty=pd_section(pd),
    )
    running = App(config, clock=clock)
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    await first_refresh(running)
    yield running
    await running.stop()


def post_text(post: dict[str, object]) -> str:
    """The fallback text and every block, as one string to search."""
    return json.dumps(post, ensure_ascii=False)


async def test_ic_in_a_slack_thread_lists_the_ics_with_a_page_button(
    app: App, fake: FakeSlack
) -> None:
    await fake.event(fake.message("!ic", thread_ts="1699999999.000001"))
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    post = fake.posts()[0]
    assert post["thread_ts"] == "1699999999.000001"
    text = post_text(post)
    for name, number in (
        ("Ada Lovelace", "555 0100"),
        ("Grace Hopper", "555 0101"),
        ("Alan Turing", "555 0102"),
    ):
        assert name in text and number in text
    assert '"value": "ic page"' in text  # the "Page Incident Commanders" button


async def test_page_button_pages_once_per_click_and_posts_the_incident(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    await fake.click("ic page", thread_ts="1699999999.000002")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    text = post_text(fake.posts()[0])
    assert "Paged Ada Lovelace, Grace Hopper, Alan Turing." in text
    assert "https://example.pagerduty.com/incidents/PINC001" in text
    assert [i["assignees"] for i in pd.incidents] == [["PADA", "PGRACE", "PALAN"]]
    assert pd.incidents[0]["incident_key"].startswith("chatopsd/slack/")


async def test_redelivered_ic_page_pages_once(app: App, fake: FakeSlack, pd: FakePagerDuty) -> None:
    event = fake.message("!ic page")
    await fake.event(event, event_id="EvPage1")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    await fake.event(event, event_id="EvPage1", retry_attempt=1)
    await fake.event(fake.message("!help", user="U2"))  # a barrier: answered after the retry
    await fake.wait_for(lambda: len(fake.posts()) == 2)
    assert len(pd.incidents) == 1
    assert pd.incidents[0]["incident_key"] == "chatopsd/slack/EvPage1"


async def test_pagerduty_down_tells_the_slack_channel_with_phone_numbers(
    app: App, fake: FakeSlack, pd: FakePagerDuty
) -> None:
    pd.fault, pd.fault_path = "hang", "/incidents"
    started = time.monotonic()
    await fake.event(fake.message("!ic page"))
    await fake.wait_for(lambda: len(fake.posts()) == 1, timeout=DEADLINE + 5)
    assert time.monotonic() - started < DEADLINE + 2  # well inside the 10 s promise
    text = post_text(fake.posts()[0])
    assert "PAGING FAILED" in text and "no answer from PagerDuty" in text
    for number in ("555 0100", "555 0101", "555 0102"):
        assert number in text
    assert pd.incidents == []


async def test_slash_ic_who(app: App, fake: FakeSlack) -> None:
    await fake.slash("/ic", "who grace@example.com")
    await fake.wait_for(lambda: len(fake.posts()) == 1)
    text = post_text(fake.posts()[0])
    assert "Grace Hopper" in text and "555 0101" in text
