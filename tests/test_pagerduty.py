"""`!ic` commands end to end: console App → bus → PagingHandler → on-call cache / PagerDuty client
→ aiohttp → the fake PagerDuty (which checks every request against the OpenAPI spec)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.features.pagerduty.client import PagerDutyClient, PagerDutyPager
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from chatopsd.features.paging.api import Person
from tests.conftest import FakeClock, make_config, transport
from tests.fakes.pagerduty import TOKEN, FakePagerDuty, FakeUser, phone
from tests.fixtures.pagerduty import (
    BOT,
    DEADLINE,
    first_refresh,
    pd,  # noqa: F401 (fixtures)
    pd_section,
)

_ids = itertools.count(1)


def pd_config(tmp_path: Path, pd: FakePagerDuty, **extra: Any) -> Any:
    section = pd_section(pd, **extra)
    return make_config(tmp_path, pagerduty=section)


async def started(tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, **extra: Any) -> App:
    app = App(
        pd_config(tmp_path, pd, **extra),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    return app


@pytest.fixture
async def app(tmp_path: Path, pd: FakePagerDuty, clock: FakeClock) -> AsyncIterator[App]:
    app = await started(tmp_path, pd, clock)
    await first_refresh(app)
    yield app
    await app.stop()


async def say(app: App, text: str, event_id: str | None = None) -> list[Reply]:
    event = Inbound(
        platform="console",
        channel="incidents",
        actor=Actor("u1", "Tess Tester"),
        text=text,
        event_id=event_id or f"ev-{next(_ids)}",
    )
    return await app.bus.handle(event)


def one(replies: list[Reply]) -> str:
    assert len(replies) == 1, replies
    return replies[0].plain()


async def test_ic_lists_everyone_on_the_ic_schedules_deduplicated(
    app: App, pd: FakePagerDuty
) -> None:
    text = one(await say(app, "!ic"))
    assert "Incident Commanders on call" in text
    # each shift's end, in chatopsd.timezone (UTC in tests)
    assert "Ada Lovelace (IC Primary, primary, until Tue 08:00 UTC): +1 555 0100" in text
    assert "ada@example.com" in text
    assert "Grace Hopper (IC Primary, backup, until Tue 08:00 UTC): +1 555 0101" in text
    assert "Alan Turing (IC Shadow, shadow, until Tue 08:00 UTC): +1 555 0102" in text
    assert "0199" not in text and "0198" not in text  # blacklisted / disabled numbers
    assert text.count("Ada Lovelace") == 1  # listed twice by /oncalls (two policies)
    assert pd.count("GET", "/oncalls") >= 4  # pages of 3 rows: pagination was followed
    assert "!ic page" in text


async def test_responders_are_one_message_grouped_by_schedule(app: App) -> None:
    text = one(await say(app, "!ic responders"))
    assert "Edsger Dijkstra (Payments, primary, until Tue 08:00 UTC): +1 555 0103" in text
    assert "Edsger Dijkstra (Database, backup, until Tue 08:00 UTC)" in text
    assert "Barbara Liskov (Database, primary, until Tue 08:00 UTC): +1 555 0104" in text


async def test_who_by_email_name_and_pagerduty_search(app: App, pd: FakePagerDuty) -> None:
    assert "+1 555 0101" in one(await say(app, "!ic who grace@example.com"))
    assert "+1 555 0100" in one(await say(app, "!ic who lovelace"))
    before = pd.count("GET", "/users/")
    # Not on call, so not in the cache: found through GET /users?query=
    assert "+1 555 0105" in one(await say(app, "!ic who linus"))
    assert pd.count("GET", "/users") > before
    assert "nobody matches" in one(await say(app, "!ic who nosuchperson"))


async def test_ic_page_pages_every_ic_once_with_from_and_key(app: App, pd: FakePagerDuty) -> None:
    text = one(await say(app, "!ic page", event_id="ev-page-1"))
    assert "Paged Ada Lovelace, Grace Hopper, Alan Turing." in text
    assert "https://example.pagerduty.com/incidents/PINC001" in text
    assert len(pd.incidents) == 1
    incident = pd.incidents[0]
    assert incident["assignees"] == ["PADA", "PGRACE", "PALAN"]
    assert incident["incident_key"] == "chatopsd/console/ev-page-1"
    assert pd.from_emails == [BOT]


async def test_redelivered_page_pages_once(app: App, pd: FakePagerDuty) -> None:
    assert "Paged" in one(await say(app, "!ic page", event_id="ev-dup"))
    assert await say(app, "!ic page", event_id="ev-dup") == []  # the bus drops the redelivery
    assert len(pd.incidents) == 1
    # And if the same key reaches PagerDuty again (a retry after a lost answer), the
    # duplicate incident_key is recognised and the existing incident returned.
    async with transport() as http:
        pager = PagerDutyPager(
            PagerDutyClient(http, pd.url, TOKEN), from_email=BOT, service_id="PSVC1", deadline=2
        )
        ada = Person("PADA", "Ada Lovelace", "ada@example.com")
        result = await pager.page([ada], "again", "chatopsd/console/ev-dup")
    assert result.duplicate and result.incident_id == "PINC001"
    assert len(pd.incidents) == 1


async def test_page_one_user_and_responders(app: App, pd: FakePagerDuty) -> None:
    assert "Paged Grace Hopper." in one(await say(app, "!ic page grace@example.com"))
    text = one(await say(app, "!ic page responders"))
    assert "Paged Barbara Liskov, Edsger Dijkstra." in text
    assert [i["assignees"] for i in pd.incidents] == [["PGRACE"], ["PBAR", "PEDS"]]


async def test_paging_only_the_from_user_is_refused(app: App, pd: FakePagerDuty) -> None:
    text = one(await say(app, f"!ic page {BOT}"))
    assert "PAGING FAILED" in text and "acknowledged and ring nobody" in text
    assert pd.incidents == []


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("500", "server error (500)"),
        ("429", "rate limiting us (429)"),
        ("429-bare", "rate limiting us (429)"),
        ("hang", "no answer from PagerDuty"),
        ("badjson", "unreadable answer"),
        ("401", "rejected the API token (401)"),
    ],
)
async def test_page_faults_fall_back_to_phone_numbers_within_the_deadline(
    app: App, pd: FakePagerDuty, fault: str, named: str
) -> None:
    pd.fault, pd.fault_path = fault, "/incidents"
    started_at = time.monotonic()
    text = one(await say(app, "!ic page"))
    elapsed = time.monotonic() - started_at
    assert elapsed < DEADLINE + 0.5, elapsed
    assert "PAGING FAILED" in text and "Could not page the Incident Commanders" in text
    assert named in text
    for number in ("+1 555 0100", "+1 555 0101", "+1 555 0102"):
        assert number in text
    assert pd.incidents == []


async def test_nobody_on_call_keeps_last_numbers_and_goes_stale(
    app: App, pd: FakePagerDuty, clock: FakeClock
) -> None:
    pd.fault = "empty"
    cache = app.part(OnCallRefresher)
    assert cache is not None
    assert await cache.refresh() is None  # an empty IC list is treated as a failed refresh
    clock.advance(121)
    text = one(await say(app, "!ic"))
    assert "On-call data as of 12:00 UTC; PagerDuty unreachable since 12:00 UTC" in text
    assert "nobody on call on the IC schedules" in text
    assert "+1 555 0100" in text


async def test_lookups_served_from_cache_while_pagerduty_is_down(
    app: App, pd: FakePagerDuty, clock: FakeClock
) -> None:
    cache = app.part(OnCallRefresher)
    assert cache is not None
    clock.advance(60)
    pd.fault = "500"
    assert await cache.refresh() is None
    fresh = one(await say(app, "!ic"))
    assert "unreachable" not in fresh  # one missed refresh is not stale yet
    clock.advance(70)  # last good refresh now 130 s old > 2 x 60 s
    asked = len(pd.requests)
    text = one(await say(app, "!ic"))
    assert len(pd.requests) == asked  # answered without asking PagerDuty
    assert "On-call data as of 12:00 UTC; PagerDuty unreachable since 12:01 UTC" in text
    assert "server error (500)" in text
    assert "+1 555 0100" in text
    who = one(await say(app, "!ic who ada@example.com"))  # a cached number, with its age
    assert "+1 555 0100" in who and "On-call data as of 12:00 UTC" in who
    paged = one(await say(app, "!ic page"))
    assert "PAGING FAILED" in paged and "+1 555 0102" in paged and "as of 12:00 UTC" in paged
    # Recovery clears the note.
    pd.fault = None
    assert await cache.refresh() is not None
    assert "unreachable" not in one(await say(app, "!ic"))


async def test_bad_token_on_refresh_is_named(app: App, pd: FakePagerDuty, clock: FakeClock) -> None:
    cache = app.part(OnCallRefresher)
    assert cache is not None
    pd.fault = "401"
    assert await cache.refresh() is None
    clock.advance(200)
    assert "check pagerduty.api_token" in one(await say(app, "!ic"))


async def test_cache_survives_restart_and_serves_the_console(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock
) -> None:
    first = await started(tmp_path, pd, clock)
    assert first.part(OnCallRefresher) is not None
    await first.part(OnCallRefresher).refresh()
    await first.stop()

    pd.fault = "hang"  # PagerDuty is gone; the answers must come from the SQLite cache
    cfg = pd_config(tmp_path, pd).model_copy(
        update={"console": make_config(tmp_path, console={"format": "jsonl"}).console}
    )
    lines = "".join(
        json.dumps({"text": t, "event_id": f"c{i}", "channel": "ops"}) + "\n"
        for i, t in enumerate(["!ic", "!ic responders", "!ic who ada@example.com"])
    )
    out = io.StringIO()
    second = App(cfg, clock=clock, io=Io(stdin=io.StringIO(lines), stdout=out))
    await second.start()
    await asyncio.wait_for(second.stopping.wait(), 10)
    await second.stop()
    replies = [json.loads(line)["text"] for line in out.getvalue().splitlines()]
    assert len(replies) == 3, replies
    assert "Ada Lovelace (IC Primary, primary, until Tue 08:00 UTC): +1 555 0100" in replies[0]
    assert "Barbara Liskov (Database, primary, until Tue 08:00 UTC)" in replies[1]
    assert "+1 555 0100" in replies[2]


@pytest.mark.parametrize(
    ("fault", "path", "named"),
    [
        ("badjson", "/oncalls", "unreadable answer"),
        ("429", "/oncalls", "rate limiting us (429)"),
        ("500", "/users/", "server error (500)"),
    ],
)
async def test_refresh_faults_keep_the_cache_and_name_the_cause(
    app: App, pd: FakePagerDuty, clock: FakeClock, fault: str, path: str, named: str
) -> None:
    cache = app.part(OnCallRefresher)
    assert cache is not None
    pd.fault, pd.fault_path = fault, path
    assert await cache.refresh() is None
    clock.advance(121)
    text = one(await say(app, "!ic"))
    assert named in text and "+1 555 0100" in text


async def test_user_deleted_between_calls_still_listed(app: App, pd: FakePagerDuty) -> None:
    cache = app.part(OnCallRefresher)
    assert cache is not None
    pd.users["PGONE"] = FakeUser("PGONE", "Gone Person", "gone@example.com", [phone("555 0666")])
    pd.schedules["PIC2"] = ("IC Shadow", [("PALAN", 1), ("PGONE", 2)])
    pd.deleted.add("PGONE")  # /oncalls still names them; GET /users/PGONE is a 404
    assert await cache.refresh() is not None
    text = one(await say(app, "!ic"))
    assert "Gone Person (IC Shadow, shadow, until Tue 08:00 UTC): no phone number on file" in text
    assert "+1 555 0102" in text


async def test_a_hanging_refresh_does_not_delay_a_page(app: App, pd: FakePagerDuty) -> None:
    cache = app.part(OnCallRefresher)
    assert cache is not None
    pd.fault, pd.fault_path = "hang", "/oncalls"
    refreshing = asyncio.create_task(cache.refresh(), name="test-refresh")
    await asyncio.sleep(0.05)
    started_at = time.monotonic()
    assert "Paged Ada Lovelace" in one(await say(app, "!ic page"))
    assert time.monotonic() - started_at < 0.5
    assert "Ada Lovelace" in one(await say(app, "!ic"))
    refreshing.cancel()
    await asyncio.gather(refreshing, return_exceptions=True)


async def test_unknown_from_user_is_a_specific_400_message(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock
) -> None:
    app = await started(tmp_path, pd, clock, from_email="nobody@example.com")
    try:
        assert app.part(OnCallRefresher) is not None
        await app.part(OnCallRefresher).refresh()
        text = one(await say(app, "!ic page"))
        assert "refused the request as invalid (400)" in text
        assert "Requester User Not Found" in text and "+1 555 0100" in text
    finally:
        await app.stop()


@pytest.mark.parametrize("fault", ["429", "500"])
async def test_page_retries_after_the_wait_pagerduty_asks_for(
    app: App, pd: FakePagerDuty, fault: str
) -> None:
    pd.fault, pd.fault_path, pd.fault_times, pd.retry_after = fault, "/incidents", 1, "0.3"
    started_at = time.monotonic()
    assert "Paged Ada Lovelace" in one(await say(app, "!ic page"))
    if fault == "429":
        assert time.monotonic() - started_at >= 0.3  # ratelimit-reset / Retry-After honoured
    assert len(pd.incidents) == 1 and pd.count("POST", "/incidents") == 2


async def test_a_lost_answer_is_retried_without_paging_twice(app: App, pd: FakePagerDuty) -> None:
    pd.fault, pd.fault_path, pd.fault_times = "drop-after", "/incidents", 1
    text = one(await say(app, "!ic page"))
    assert "Already paged for this request: Ada Lovelace, Grace Hopper, Alan Turing." in text
    assert "PINC001" in text
    assert len(pd.incidents) == 1 and pd.count("POST", "/incidents") == 2


async def test_stale_cache_says_the_cause_first_then_whom_to_call_then_the_fallback(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock
) -> None:
    app = await started(
        tmp_path, pd, clock, fallback_contacts=[{"name": "Duty Manager", "phone": "+1 555 0911"}]
    )
    try:
        await first_refresh(app)
        cache = app.part(OnCallRefresher)
        clock.advance(60)
        pd.fault = "500"
        assert await cache.refresh() is None
        clock.advance(70)  # stale
        for command in ("!ic", "!ic page"):
            lines = one(await say(app, command)).splitlines()
            cause = next(i for i, ln in enumerate(lines) if "unreachable since" in ln)
            ada = next(i for i, ln in enumerate(lines) if "+1 555 0100" in ln)
            header = next(i for i, ln in enumerate(lines) if "call the fallback contacts" in ln)
            manager = next(i for i, ln in enumerate(lines) if "+1 555 0911" in ln)
            # the cause, then the IC on call, then the fallback header, then the contact
            assert cause < ada < header <= manager, (command, lines)
            if command == "!ic page":
                assert lines[1].startswith("Could not page the Incident Commanders: ")
    finally:
        await app.stop()
