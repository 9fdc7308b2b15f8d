"""Scheduled jobs: named, one run at a time, failures logged with the job's name."""

from __future__ import annotations

import asyncio
import logging

import pytest

from chatopsd.scheduler import Scheduler


async def test_failing_job_is_logged_by_name_and_keeps_its_schedule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler()
    ran = asyncio.Event()

    async def broken() -> None:
        ran.set()
        raise ValueError("upstream returned garbage")

    scheduler.every("refresh-oncall", 3600, broken)
    with caplog.at_level(logging.ERROR, logger="chatopsd.scheduler"):
        scheduler.start()
        await asyncio.wait_for(ran.wait(), 5)
        for _ in range(50):
            if scheduler.failures:
                break
            await asyncio.sleep(0.01)
    assert scheduler.failures == {"refresh-oncall": 1}
    assert "job refresh-oncall failed" in caplog.text and "upstream returned garbage" in caplog.text
    assert scheduler.jobs == ["refresh-oncall"]  # still scheduled for its next run
    scheduler.shutdown()


async def test_a_slow_job_never_overlaps_itself() -> None:
    scheduler = Scheduler()
    running = 0
    overlaps = 0
    runs = 0

    async def slow() -> None:
        nonlocal running, overlaps, runs
        running += 1
        runs += 1
        overlaps += running > 1
        await asyncio.sleep(0.35)
        running -= 1

    scheduler.every("slow", 0.1, slow)  # due every 0.1 s, takes 0.35 s
    scheduler.start()
    await asyncio.sleep(1.0)
    scheduler.shutdown()
    assert overlaps == 0 and 2 <= runs <= 4
