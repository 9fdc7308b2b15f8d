"""On-call answers tell the truth when PagerDuty is down, unconfigured or the cache is empty.

PagerDuty (the spec-checked fake) down from the very first refresh: no answer may say or imply
that nobody is on call; `ctl health` (through the real control socket) and STATUS= (a real
datagram) name the failure. Console through the App/bus, and Slack through its fake.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.control import ControlServer, render_health, request
from chatopsd.core.messages import Reply
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from chatopsd.systemd import Notifier, Watchdog
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.pagerduty import DEADLINE, first_refresh, pd, pd_section  # noqa: F401
from tests.fixtures.slack import fake  # noqa: F401
from tests.test_pagerduty import say
from tests.waiting import eventually

FALLBACK = [{"name": "Duty Manager", "phone": "+1 555 0911"}]
# Words that read as "nobody is on call" at 3am.
NOBODY = re.compile(r"no(body| one| incident commanders?| responders?)\b.*on call", re.I)


def plain(replies: list[Reply]) -> str:
    assert len(replies) == 1, replies
    return replies[0].plain()


async def first_failure(app: App) -> None:
    """Wait for the first (failing) refresh to be recorded."""
    cache = app.part(OnCallRefresher)
    assert cache is not None
    pd_jobs = {j for j in app.scheduler.jobs if j.startswith("pagerduty-")}
    await eventually(
        lambda: (
            cache.snapshot.failing_since is not None and pd_jobs <= set(app.scheduler.failing())
        ),
        timeout=5,
        what="the first refresh never failed",
    )


@pytest.fixture
async def down(
    tmp_path: Path,
    pd: FakePagerDuty,
    clock: FakeClock,
) -> AsyncIterator[App]:
    """PagerDuty answers 500 to everything from the start; nothing was ever cached."""
    pd.fault = "500"
    section = pd_section(pd, fallback_contacts=FALLBACK, incident_channels=["console:incidents"])
    app = App(
        make_config(tmp_path, pagerduty=section),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    await first_failure(app)
    yield app
    await app.stop()


async def test_pagerduty_down_from_the_start_never_says_nobody_is_on_call(
    down: App,
    pd: FakePagerDuty,
    tmp_path: Path,
) -> None:
    ic = plain(await say(down, "!ic"))
    first_line = ic.splitlines()[1]  # after the title
    assert first_line == (
        "I can't tell who is on call: PagerDuty has not answered since 12:00 UTC "
        "(PagerDuty server error (500)), and there is no cached data."
    )
    assert "Duty Manager (fallback): +1 555 0911" in ic  # the manual path
    responders = plain(await say(down, "!ic responders"))
    assert responders.splitlines()[1].startswith("I can't tell who is on call: PagerDuty")

    asked = len(pd.requests)
    who = plain(await say(down, "!ic who ada"))
    assert "PagerDuty unreachable" in who and "the cache has no one called 'ada'" in who
    assert len(pd.requests) == asked  # known down: answered from the cache, no search to wait on

    page = plain(await say(down, "!ic page"))
    assert "PAGING FAILED" in page and "server error (500)" in page
    assert "Duty Manager (fallback): +1 555 0911" in page
    assert pd.incidents == []

    for text in (ic, responders, who, page):
        assert not NOBODY.search(text), text
        assert "nobody is on call" not in text.lower()

    audit = [(r.command, r.outcome) for r in await down.audit.since(None)]
    assert audit == [
        ("ic", "failed"),
        ("ic responders", "failed"),
        ("ic who", "failed"),
        ("ic page", "failed"),
    ]

    # ctl health, through the control socket, names the failure
    control = ControlServer(down.health(), tmp_path / "ctl.sock", outbox=down.outbox)
    await control.start()
    try:
        answer = await asyncio.to_thread(request, control.path, {"cmd": "health"})
    finally:
        await control.close()
    # the refresh by its name: the pagerduty-incidents poll (failing too) is another job
    assert answer["health"]["pagerduty_refresh"]["job"] == "pagerduty-refresh"
    # and the PagerDuty feature says how old its on-call snapshot is: never refreshed
    pagerduty = answer["health"]["features"]["pagerduty"]
    assert pagerduty["oncall_as_of"] is None and pagerduty["failing_since"] is not None
    lines = render_health(answer["health"])
    assert any(ln.startswith("job pagerduty-incidents failing since 12:00 UTC") for ln in lines)
    assert (
        "PagerDuty refresh failing since 12:00 UTC (PagerDuty server error (500)); "
        "last success never (1 failures)"
    ) in lines, lines

    # STATUS= as systemd receives it
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        path = str(tmp_path / "notify.sock")
        listener.bind(path)
        Watchdog(Notifier({"NOTIFY_SOCKET": path}), status=down.status_line).push_status()
        status = listener.recv(4096).decode()
    assert status.startswith("STATUS=") and (
        "PagerDuty refresh failing since 12:00 UTC (PagerDuty server error (500))" in status
    )

    # and the metrics
    metrics = down.metrics.text().decode()
    assert 'chatopsd_job_failures_total{job="pagerduty-refresh"} 1.0' in metrics


async def test_empty_cache_still_pages_through_the_escalation_policy(
    tmp_path: Path,
    pd: FakePagerDuty,
    clock: FakeClock,
) -> None:
    pd.fault, pd.fault_path = "500", "/oncalls"  # the refresh fails; paging works
    app = App(
        make_config(tmp_path, pagerduty=pd_section(pd)),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    try:
        await first_failure(app)
        text = plain(await say(app, "!ic page the checkout is down"))
        assert "Paged the Incident Commanders through the service's escalation policy" in text
        assert "PINC001" in text and "PAGING FAILED" not in text
        [incident] = pd.incidents
        assert incident["assignees"] == []  # PagerDuty's escalation policy decides
        assert incident["title"].startswith("the checkout is down (Tess Tester paging")
        [row] = await app.audit.since(None)
        assert (row.outcome, row.cause) == ("ok", "incident PINC001")
    finally:
        await app.stop()


async def test_page_posts_a_notice_at_once_then_edits_it_and_repage_asks_first(
    tmp_path: Path,
    pd: FakePagerDuty,
    clock: FakeClock,
) -> None:
    out = io.StringIO()
    cfg = make_config(
        tmp_path,
        pagerduty=pd_section(pd),
        console={"format": "jsonl"},
    )
    app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out))
    await app.start()
    try:
        await first_refresh(app)
        await say(app, "!ic page")
        await app.outbox.flush(5)
        notice, edit = [json.loads(line) for line in out.getvalue().splitlines()]
        assert notice["text"] == "Paging the Incident Commanders…"
        assert edit["edit"] == notice["message_id"]
        assert "Paged Ada Lovelace, Grace Hopper, Alan Turing." in edit["text"]

        clock.advance(60)
        again = await say(app, "!ic page")
        assert plain(again).startswith("The Incident Commanders: already paged\n")
        assert (
            "Already paged at 12:00 UTC by Tess Tester "
            "(https://example.pagerduty.com/incidents/PINC001)."
        ) in plain(again)
        [button] = again[0].buttons
        assert (button.label, button.command) == ("Page again", "ic page again")
        assert len(pd.incidents) == 1
        # the button's command bypasses the window: it pages at once
        assert "Paged Ada Lovelace" in plain(await say(app, f"!{button.command}"))
        assert len(pd.incidents) == 2
        clock.advance(301)  # past pagerduty.repage_window_seconds
        assert "Paged Ada Lovelace" in plain(await say(app, "!ic page"))
        assert len(pd.incidents) == 3
    finally:
        await app.stop()


# -- Slack ---------------------------------------------------------------------------------


def slack_section(fake: FakeSlack) -> dict[str, Any]:
    return {"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": fake.api_url}


async def test_slack_with_pagerduty_down_from_the_start(
    tmp_path: Path,
    pd: FakePagerDuty,
    fake: FakeSlack,
    clock: FakeClock,
) -> None:
    pd.fault = "500"
    config = make_config(
        tmp_path,
        console={"enabled": False},
        slack=slack_section(fake),
        pagerduty=pd_section(pd, fallback_contacts=FALLBACK),
    )
    app = App(config, clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        await first_failure(app)
        await fake.event(fake.message("!ic"))
        await fake.wait_for(lambda: len(fake.posts()) == 1)
        ic = json.dumps(fake.posts()[0], ensure_ascii=False)
        assert "I can't tell who is on call: PagerDuty has not answered since 12:00 UTC" in ic
        assert "+1 555 0911" in ic and not NOBODY.search(ic)
        await fake.event(fake.message("!ic page"))
        await fake.wait_for(lambda: len(fake.posts("chat.update")) == 1, timeout=DEADLINE + 5)
        assert "Paging the Incident Commanders…" in fake.posts()[1]["text"]
        failed = json.dumps(fake.posts("chat.update")[0], ensure_ascii=False)
        assert "PAGING FAILED" in failed and "+1 555 0911" in failed
        assert not NOBODY.search(failed)
    finally:
        await app.stop()


async def test_slack_without_pagerduty_says_it_is_not_configured(
    tmp_path: Path,
    fake: FakeSlack,
    clock: FakeClock,
) -> None:
    config = make_config(tmp_path, console={"enabled": False}, slack=slack_section(fake))
    app = App(config, clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        await fake.event(fake.message("!ic page"))
        await fake.wait_for(lambda: len(fake.posts()) == 1)
        text = json.dumps(fake.posts()[0], ensure_ascii=False)
        assert "Cannot page the Incident Commanders: PagerDuty is not configured" in text
        assert "nobody is on call" not in text and not NOBODY.search(text)
        [row] = await app.audit.since(None)
        assert row.outcome == "failed" and "not configured" in (row.cause or "")
    finally:
        await app.stop()


async def test_on_call_for_a_configured_service(
    tmp_path: Path,
    pd: FakePagerDuty,
    clock: FakeClock,
) -> None:
    services = [{"name": "payments", "schedules": ["PRS1"]}]
    app = App(
        make_config(tmp_path, pagerduty=pd_section(pd, services=services)),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    try:
        await first_refresh(app)
        text = plain(await say(app, "!ic service Payments"))
        assert text.startswith("People on call for payments")
        assert "Edsger Dijkstra (Payments, primary" in text and "+1 555 0103" in text
        assert "Ada Lovelace" not in text
        unknown = plain(await say(app, "!ic service checkout"))
        assert "I don't know a service called checkout. I know: payments." in unknown
    finally:
        await app.stop()


async def test_page_one_word_is_a_person_if_pagerduty_knows_them_else_a_reason(
    tmp_path: Path,
    pd: FakePagerDuty,
    clock: FakeClock,
) -> None:
    app = App(
        make_config(tmp_path, pagerduty=pd_section(pd)),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    try:
        await first_refresh(app)
        # not on call, found by PagerDuty's user search: that person is paged
        assert "Paged Linus Torvalds." in plain(await say(app, "!ic page linus"))
        assert pd.incidents[-1]["assignees"] == ["PLIN"]
        # nobody called "outage": a reason for the Incident Commanders
        text = plain(await say(app, "!ic page outage"))
        assert "Paged Ada Lovelace, Grace Hopper, Alan Turing." in text
        assert "Reason: outage" in text and pd.incidents[-1]["title"].startswith("outage (")
    finally:
        await app.stop()


# -- Mattermost ----------------------------------------------------------------------------


async def test_mattermost_page_notice_is_edited_into_the_failure(
    tmp_path: Path,
    pd: FakePagerDuty,
    clock: FakeClock,
) -> None:
    from tests.fakes.mattermost import TOKEN, FakeMattermost

    pd.fault = "500"
    server = FakeMattermost()
    await server.start()
    config = make_config(
        tmp_path,
        console={"enabled": False},
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
        pagerduty=pd_section(pd, fallback_contacts=FALLBACK),
    )
    app = App(config, clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        await first_failure(app)
        await server.user_post("!ic page")
        for _ in range(int((DEADLINE + 5) * 100)):
            posts = server.bot_posts()
            if posts and posts[0].get("edit_at"):
                break
            await asyncio.sleep(0.01)
        [post] = server.bot_posts()  # one message: the notice, edited in place
        assert post.get("edit_at"), post
        text = post["message"].replace("\\", "")  # Mattermost markdown, unescaped
        assert "PAGING FAILED" in text and "server error (500)" in text
        assert "+1 555 0911" in text and not NOBODY.search(text)
    finally:
        await app.stop()
        await server.stop()


async def test_ic_next_says_pagerduty_is_unreachable_when_that_is_why(down: App) -> None:
    for command in ("!ic next", "!ic schedule"):
        text = plain(await say(down, command))
        assert (
            "PagerDuty is unreachable since Mon 12:00 (PagerDuty server error (500)): "
            "the coming shifts have not been read"
        ) in text, text
        assert "yet" not in text
