"""Handoff announcements, end to end on the console connector: the PagerDuty refresh
job → the on-call cache → Handoffs → SQLite → the outbox, against the fake PagerDuty (every
request checked against PagerDuty's OpenAPI document) whose on-call answers the tests change."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.core.errors import JobFailed
from chatopsd.features.oncall import handoff_rules as handoff
from chatopsd.features.oncall.handoff_rules import Holders, Watched
from chatopsd.features.oncall.handoffs import Handoffs
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from chatopsd.features.paging.api import OnCall, Person
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401

ADA_TO_GRACE = "🔁 IC Primary: Ada Lovelace → Grace Hopper, until Tue 08:00"


async def start(tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO) -> App:
    pd.now = clock.now
    app = App(
        make_config(tmp_path, pagerduty=pd_section(pd, handoff_channels=["console:oncall"])),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=out),
    )
    await app.start()
    await first_refresh(app)
    await refresh(app)  # the start-up refresh's hook may still run: one more, in order
    return app


async def refresh(app: App) -> bool:
    """One scheduled refresh; False when it failed (the job raises JobFailed for health)."""
    assert app.part(OnCallRefresher) is not None
    try:
        await app.part(OnCallRefresher).refresh_job()
    except JobFailed:
        return False
    return True


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> AsyncIterator[App]:
    running = await start(tmp_path, pd, clock, out)
    yield running
    await running.stop()


def grace_takes_over(pd: FakePagerDuty) -> None:
    pd.schedules["PIC1"] = ("IC Primary", [("PGRACE", 1), ("PALAN", 2)])


def back_to_ada(pd: FakePagerDuty) -> None:
    pd.schedules["PIC1"] = ("IC Primary", [("PADA", 1), ("PGRACE", 2)])


async def test_first_sight_is_a_baseline_and_an_unchanged_roster_posts_nothing(
    app: App, out: io.StringIO
) -> None:
    for _ in range(3):
        await refresh(app)
    assert "🔁" not in out.getvalue()


async def test_a_handoff_is_announced_once_across_a_failed_refresh_and_restarts(
    tmp_path: Path, app: App, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> None:
    grace_takes_over(pd)
    await refresh(app)  # seen once: not yet news
    assert "🔁" not in out.getvalue()
    pd.fault, pd.fault_path = "500", "/oncalls"
    assert not await refresh(app)  # a failed read decides nothing
    pd.fault = None
    await app.stop()  # the pending change survives the restart
    second = io.StringIO()
    app2 = await start(tmp_path, pd, clock, second)
    try:
        for _ in range(3):
            await refresh(app2)
        shown = second.getvalue()
        assert shown.count("🔁") == 2, shown  # primary changed, and the backup level too
        assert shown.count(ADA_TO_GRACE) == 1
        assert "🔁 IC Primary backup: Grace Hopper → Alan Turing, until Tue 08:00" in shown
    finally:
        await app2.stop()
    third = io.StringIO()
    app3 = await start(tmp_path, pd, clock, third)
    try:
        await refresh(app3)
        assert "🔁" not in third.getvalue()  # announced before: never again
    finally:
        await app3.stop()


async def test_a_one_refresh_blip_and_flapping_are_not_announced(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    for _ in range(3):  # PagerDuty's answers flip around the handoff
        grace_takes_over(pd)
        await refresh(app)
        back_to_ada(pd)
        await refresh(app)
    assert "🔁" not in out.getvalue()


async def test_an_empty_schedule_or_an_empty_read_is_not_a_handoff_to_nobody(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    pd.schedules["PRS1"] = ("Payments", [])
    pd.fault = "empty"  # PagerDuty lists nobody at all: the refresh fails, nothing is decided
    assert not await refresh(app)
    assert not await refresh(app)
    pd.fault = None
    await refresh(app)
    await refresh(app)  # Payments empty in two good reads: still no "→ nobody"
    assert "🔁" not in out.getvalue()
    assert "nobody" not in out.getvalue()


async def test_a_crash_between_deciding_and_posting_neither_loses_nor_duplicates(
    tmp_path: Path, app: App, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> None:
    grace_takes_over(pd)
    await refresh(app)
    assert app.part(OnCallRefresher) is not None and app.part(Handoffs) is not None
    await app.part(OnCallRefresher).refresh()
    entries = [e for g in app.part(OnCallRefresher).snapshot.entries.values() for e in g]
    await app.part(Handoffs).decide(entries)  # decided and durable; the daemon dies before posting
    await app.stop()
    assert "🔁" not in out.getvalue()
    second = io.StringIO()
    app2 = await start(tmp_path, pd, clock, second)
    try:
        await refresh(app2)
        assert second.getvalue().count(ADA_TO_GRACE) == 1
    finally:
        await app2.stop()


# -- the pure decision ---------------------------------------------------------------------

T = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _holders(*names: str, until: datetime | None = T) -> Holders:
    return Holders("IC primary", tuple(n.lower() for n in names), names, until)


def test_step_needs_two_agreeing_reads_and_ignores_the_jitter_of_until() -> None:
    ada, grace = _holders("Ada"), _holders("Grace")
    assert handoff.step("w", ada, None, None) == handoff.Step("w", ada, None, 0, None)
    settled = Watched(ada, None, 0)
    jittered = _holders("Ada", until=T + timedelta(seconds=30))
    assert handoff.step("w", jittered, settled, None) is None
    first = handoff.step("w", grace, settled, None)
    assert first is not None and first.text is None and first.pending == grace
    second = handoff.step("w", grace, Watched(ada, grace, 0), None)
    assert second is not None and second.seq == 1
    assert second.text == "🔁 IC primary: Ada → Grace, until Tue 09:00"
    back = handoff.step("w", ada, Watched(ada, grace, 0), None)
    assert back is not None and back.pending is None and back.text is None


def test_observe_groups_by_schedule_and_role_and_labels_them() -> None:
    ada, grace = Person("PADA", "Ada"), Person("PGRACE", "Grace")
    seen = handoff.observe(
        [
            OnCall(grace, "S1", "IC", "primary", T),
            OnCall(ada, "S1", "IC", "backup", T),
            OnCall(grace, "S1", "IC", "primary", T - timedelta(hours=1)),
        ]
    )
    assert seen["S1:primary"] == Holders(
        "IC primary", ("PGRACE",), ("Grace",), T - timedelta(hours=1)
    )
    assert seen["S1:backup"].label == "IC backup"


def test_a_topic_template_with_an_unknown_placeholder_is_refused(
    tmp_path: Path, pd: FakePagerDuty
) -> None:
    with pytest.raises(ValueError, match=r"may only use \{ic\} and \{responders\}"):
        make_config(tmp_path, pagerduty=pd_section(pd, topic_channels={"slack:C1": "IC: {who}"}))


def test_shift_times_are_shown_in_the_configured_zone() -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    assert handoff.shift_time(T, paris) == "Tue 10:00"
    assert handoff.shift_time(T, paris, now=T - timedelta(days=7)) == "Tue 24 Nov 10:00"
