"""Health comes from outcomes: a job that swallowed its failure is still a failing job, and the
journal gets one WARNING when it starts, at most one line every 5 minutes while it lasts, and
one INFO when it recovers."""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.control import health, render_health
from chatopsd.core.errors import JobFailed
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from chatopsd.scheduler import Scheduler
from tests.conftest import FakeClock, make_config


def lines(caplog: pytest.LogCaptureFixture, fragment: str) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if fragment in r.getMessage()]


async def test_a_job_that_returns_its_failure_is_counted_and_logged_sparingly(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = Scheduler(clock)
    broken = True

    async def refresh() -> None:
        if broken:
            raise JobFailed("PagerDuty server error (500)")  # handled inside, reported here

    with caplog.at_level(logging.INFO, logger="chatopsd.scheduler"):
        for _ in range(10):  # ten runs, 30 s apart: 4.5 minutes of outage
            await scheduler.run("pagerduty-refresh", refresh)
            clock.advance(30)
        job = scheduler.health["pagerduty-refresh"]
        assert job.failures == 10 and job.cause == "PagerDuty server error (500)"
        assert job.failing_since is not None and job.last_ok is None
        assert lines(caplog, "pagerduty-refresh") == [
            ("WARNING", "job pagerduty-refresh failing: PagerDuty server error (500)")
        ]
        await scheduler.run("pagerduty-refresh", refresh)  # 5 minutes in: one reminder
        assert lines(caplog, "pagerduty-refresh")[-1] == (
            "WARNING",
            "job pagerduty-refresh still failing since 12:00 UTC: PagerDuty server error (500)",
        )
        broken = False
        await scheduler.run("pagerduty-refresh", refresh)
        await scheduler.run("pagerduty-refresh", refresh)
    assert len(lines(caplog, "pagerduty-refresh")) == 3
    assert lines(caplog, "pagerduty-refresh")[-1] == (
        "INFO",
        "job pagerduty-refresh recovered (failing since 12:00 UTC: PagerDuty server error (500))",
    )
    assert not scheduler.health["pagerduty-refresh"].failing
    assert scheduler.health["pagerduty-refresh"].failures == 11  # counted, not forgotten


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_status_source_is_logged_and_fails_the_poll(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    config = make_config(
        tmp_path,
        status={"sources": [{"kind": "alertmanager", "url": url, "timeout_seconds": 1}]},
    )
    app = App(config, clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    try:
        with caplog.at_level(logging.INFO, logger="chatopsd.scheduler"):
            # nobody stalks: the poll still reads the sources, so the outage is seen
            for _ in range(3):
                await app.scheduler.run("status-poll", app.jobs["status-poll"])
                clock.advance(30)
        said = lines(caplog, "alertmanager")  # one line for the outage, not one per poll
        assert len(said) == 1 and said[0][0] == "WARNING", said
        assert "status source alertmanager failing:" in said[0][1]
        job = app.scheduler.health["status-poll"]
        assert job.failing and job.failures >= 3
        assert job.cause.startswith("alertmanager unreachable (")
        text = "\n".join(render_health(health(app.health())))
        assert "status poll failing since 12:00 UTC (alertmanager unreachable (" in text
        assert "status poll failing since" in app.status_line()
    finally:
        await app.stop()


async def test_pagerduty_outage_costs_one_journal_line_per_five_minutes(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Every refresh retries several times; the journal still gets one WARNING for the outage,
    not a line per attempt per refresh."""
    from tests.fakes.pagerduty import FakePagerDuty
    from tests.fixtures.pagerduty import fake_pd, pd_section

    pd: FakePagerDuty = fake_pd()
    await pd.start()
    pd.fault = "500"
    app = App(
        make_config(tmp_path, pagerduty=pd_section(pd, refresh_seconds=3600)),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    try:
        cache = app.part(OnCallRefresher)
        assert cache is not None
        await app.scheduler.run("pagerduty-refresh", cache.refresh_job)  # the outage starts
        assert "job pagerduty-refresh failing: PagerDuty server error (500)" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            for _ in range(2):  # more refreshes, a minute apart, each retrying
                clock.advance(60)
                await app.scheduler.run("pagerduty-refresh", cache.refresh_job)
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert loud == [], [r.getMessage() for r in loud]  # already said when it started
        assert pd.count("GET", "/oncalls") >= 6  # it did keep trying, several times each
        assert app.scheduler.health["pagerduty-refresh"].failures >= 3
    finally:
        await app.stop()
        await pd.close()
