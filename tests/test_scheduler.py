"""Scheduled jobs: named, one run at a time, failures logged with the job's name."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES

from chatopsd.scheduler import Scheduler
from tests.waiting import eventually, loop_barrier


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
        await eventually(lambda: scheduler.failures)
    assert scheduler.failures == {"refresh-oncall": 1}
    assert "job refresh-oncall failed" in caplog.text and "upstream returned garbage" in caplog.text
    assert scheduler.jobs == ["refresh-oncall"]  # still scheduled for its next run
    scheduler.shutdown()


async def test_a_slow_job_never_overlaps_itself_and_missed_runs_coalesce() -> None:
    """Told by events, not by a window of wall time: the run in flight is held until
    APScheduler has refused to start the job again (max_instances) at least twice."""
    scheduler = Scheduler()
    gates: list[asyncio.Event] = []  # one per run: the run ends when the test opens it
    running = overlaps = refused = 0

    async def slow() -> None:
        nonlocal running, overlaps
        running += 1
        overlaps += running > 1
        gates.append(gate := asyncio.Event())
        await gate.wait()
        running -= 1

    def on_refused(event: object) -> None:
        nonlocal refused
        refused += 1

    scheduler.every("slow", 0.02, slow)  # due every 20 ms, held far longer
    scheduler._scheduler.add_listener(on_refused, EVENT_JOB_MAX_INSTANCES)
    scheduler.start()
    try:
        await eventually(lambda: len(gates) == 1)
        await eventually(lambda: refused >= 2, what="two refused starts while one runs")
        assert len(gates) == 1 and overlaps == 0  # refused, not run alongside
        held_back = refused
        gates[0].set()  # the first run ends; the next due time starts one run, not the missed
        await eventually(lambda: len(gates) == 2)
        await eventually(lambda: refused >= held_back + 2, what="refused again")
        assert len(gates) == 2 and overlaps == 0
    finally:
        for gate in gates:
            gate.set()
        scheduler.shutdown()


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
        await loop_barrier()  # the executor's done-callbacks have run
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
