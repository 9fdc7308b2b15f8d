"""The on-call lookahead: GET /oncalls with since/until after each refresh, cached in
SQLite, and `!ic next` / `!ic schedule` answered from it; handoffs driven by the clock. End to
end on the console connector against the fake PagerDuty (requests checked against the spec)."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from chatopsd.features.oncall.lookahead import LookaheadRefresher
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401

_ids = itertools.count(1)
MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # the clock starts Monday 12:00 UTC
DAY = timedelta(days=1)


def rotate(pd: FakePagerDuty) -> None:
    """IC Primary: Ada, then Grace, then Alan, a day each; Payments: Edsger then Barbara."""
    pd.shifts["PIC1"] = [
        ("PADA", 1, MON8, MON8 + DAY),
        ("PGRACE", 1, MON8 + DAY, MON8 + 2 * DAY),
        ("PALAN", 1, MON8 + 2 * DAY, MON8 + 3 * DAY),
        ("PEDS", 2, MON8, MON8 + 3 * DAY),
    ]
    pd.shifts["PRS1"] = [
        ("PEDS", 1, MON8 - DAY, MON8 + 7 * DAY),
        ("PBAR", 1, MON8 + 7 * DAY, MON8 + 14 * DAY),
    ]


async def start(tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO) -> App:
    pd.now = clock.now
    app = App(
        make_config(
            tmp_path,
            pagerduty=pd_section(pd, handoff_channels=["console:oncall"], lookahead_days=30),
        ),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=out),
    )
    await app.start()
    await first_refresh(app)
    await refresh(app)
    return app


async def refresh(app: App) -> None:
    assert app.part(OnCallRefresher) is not None
    await app.part(OnCallRefresher).refresh_job()


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> AsyncIterator[App]:
    rotate(pd)
    running = await start(tmp_path, pd, clock, out)
    yield running
    await running.stop()


async def say(app: App, text: str) -> str:
    event = Inbound("console", "ops", Actor("u1", "Tess"), text, event_id=f"sh-{next(_ids)}")
    return "\n".join(r.plain() for r in await app.bus.handle(event))


async def test_ic_next_names_who_is_on_now_and_next(app: App) -> None:
    text = await say(app, "!ic next")
    assert (
        "IC Primary: Ada Lovelace until Tue 08:00, then Grace Hopper from Tue 08:00 "
        "until Wed 08:00" in text
    ), text
    assert "IC Shadow: Alan Turing until Tue 08:00" in text  # a schedule without a rotation
    payments = await say(app, "!ic next payments")
    assert (
        "Payments primary: Edsger Dijkstra until Mon 30 Nov 08:00, "
        "then Barbara Liskov from Mon 30 Nov 08:00 until Mon 07 Dec 08:00" in payments
    )
    assert "IC Primary" not in payments
    assert "no configured schedule matches" in await say(app, "!ic next nosuch")


async def test_ic_schedule_is_a_compact_table_of_coming_shifts(app: App) -> None:
    text = await say(app, "!ic schedule 1")  # Mon 12:00 to Tue 12:00
    lines = [line for line in text.splitlines() if "→" in line]
    assert lines[0].startswith("Mon 12:00 → Mon 30 Nov 08:00") and "Edsger" in lines[0], text
    assert any(ln.startswith("Mon 12:00 → Tue 08:00") and "Ada Lovelace" in ln for ln in lines)
    assert any("Tue 08:00 → Wed 08:00" in ln and "Grace Hopper" in ln for ln in lines)
    assert not any("Alan Turing" in ln and "Wed 08:00 → Thu" in ln for ln in lines), text
    assert any("IC Primary backup" in ln and "Edsger Dijkstra" in ln for ln in lines)
    assert "between 1 and 30" in await say(app, "!ic schedule 31")


async def test_lookahead_is_cached_across_a_restart_and_an_outage_says_so(
    tmp_path: Path, app: App, pd: FakePagerDuty, clock: FakeClock
) -> None:
    before = pd.count("GET", "/oncalls")
    await say(app, "!ic next")
    await say(app, "!ic schedule")
    assert pd.count("GET", "/oncalls") == before  # answered from the cache
    await app.stop()
    pd.fault = "500"  # PagerDuty down for the whole next run
    app2 = await start_down(tmp_path, pd, clock)
    try:
        text = await say(app2, "!ic next")
        assert "Ada Lovelace until Tue 08:00, then Grace Hopper" in text, text
        assert app2.part(LookaheadRefresher) is not None
        assert await app2.part(LookaheadRefresher).refresh() is False
        text = await say(app2, "!ic next")
        assert "Grace Hopper" in text and "PagerDuty unreachable since Mon 12:00" in text, text
    finally:
        await app2.stop()


async def start_down(tmp_path: Path, pd: FakePagerDuty, clock: FakeClock) -> App:
    app = App(
        make_config(tmp_path, pagerduty=pd_section(pd, lookahead_days=30)),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    return app


async def test_the_clock_reaching_a_shift_change_announces_the_handoff_once(
    app: App, clock: FakeClock, out: io.StringIO
) -> None:
    clock.advance(19 * 3600 + 59 * 60 + 45)  # Tue 07:59:45: not yet
    await refresh(app)
    clock.advance(30)  # jitter around the change: one read after it...
    await refresh(app)
    assert "🔁" not in out.getvalue()
    clock.advance(60)  # ...and a second one agreeing
    await refresh(app)
    await refresh(app)
    shown = out.getvalue()
    assert shown.count("🔁") == 1
    assert "🔁 IC Primary: Ada Lovelace → Grace Hopper, until Wed 08:00" in shown
