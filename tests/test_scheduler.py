"""Scheduled jobs: named, one run at a time, failures logged with the job's name."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

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


async def test_stop_during_a_run_logs_no_cancelled_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`printf '!IC\\n' | chatopsd run` sometimes ended with "Job approvals-expire raised
    an exception ... CancelledError": the scheduler cancelled a run at a normal exit."""
    scheduler = Scheduler()
    started = asyncio.Event()

    async def sweep() -> None:
        started.set()
        await asyncio.sleep(30)

    scheduler.every("approvals-expire", 3600, sweep)
    scheduler.every("prune", 3600, sweep)
    with caplog.at_level(logging.DEBUG):
        scheduler.start()
        await asyncio.wait_for(started.wait(), 5)
        await scheduler.stop(grace=0.05)
        await asyncio.sleep(0.05)  # the executor's done-callbacks have run
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "CancelledError" not in caplog.text
    assert scheduler.failures == {}  # a shutdown is not a job failure


def test_console_run_exits_quietly(tmp_path: Path) -> None:
    """The reproduction from the issue, as a real process: no traceback on a normal exit."""
    for i in range(4):
        done = subprocess.run(
            [sys.executable, "-m", "chatopsd", "run"],
            input="!IC\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "STATE_DIRECTORY": str(tmp_path / f"state{i}")},
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "CancelledError" not in done.stderr, done.stderr
        assert "Incident Commanders" in done.stdout
