"""Scheduled jobs on the daemon's own loop (APScheduler 3.x AsyncIOScheduler).

Every job: named, at most one run at a time, missed runs coalesced into one. Job bodies are
plain async functions that take the time from the injected Clock, so tests call them directly
instead of waiting on the wall clock.

Health comes from outcomes: a job that catches its own failure (the PagerDuty refresh keeps the
cache and records the error; the status poll reads UNKNOWN) raises `JobFailed` with the cause,
so `ctl health`, STATUS= and the metrics count it as the failure it is. Logging goes through
`logs.OutageLog`: one WARNING when a job starts failing, a reminder at most every 5 minutes while it
lasts, one INFO when it recovers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chatopsd.core.errors import JobFailed
from chatopsd.core.ports import Clock, SystemClock
from chatopsd.logs import OutageLog

__all__ = ["JobFailed", "JobHealth", "Scheduler"]

log = logging.getLogger("chatopsd.scheduler")

Job = Callable[[], Awaitable[object]]


@dataclass(slots=True)
class JobHealth:
    last_ok: datetime | None = None
    failing_since: datetime | None = None
    cause: str = ""
    failures: int = 0  # failed runs since start

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


class Scheduler:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self.health: dict[str, JobHealth] = {}
        self.outages = OutageLog(log, self.clock)
        self._running: set[asyncio.Task[object]] = set()

    @property
    def failures(self) -> dict[str, int]:
        return {name: h.failures for name, h in self.health.items() if h.failures}

    @property
    def last_ok(self) -> dict[str, datetime]:
        """When each job last did its work (health: PagerDuty refresh, status poll)."""
        return {name: h.last_ok for name, h in self.health.items() if h.last_ok is not None}

    def every(self, name: str, seconds: float, job: Job, *, run_now: bool = True) -> None:
        self.health.setdefault(name, JobHealth())

        async def guarded() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                await self.run(name, job)
            except asyncio.CancelledError:
                # Shutdown cancels a run in flight: that is how it ends, not a job failure.
                log.debug("job %s cancelled", name)
            finally:
                if task is not None:
                    self._running.discard(task)

        # (next_run_time=None would mean "paused", so it is only passed to run at once)
        first = {"next_run_time": datetime.now(UTC)} if run_now else {}
        self._scheduler.add_job(
            guarded,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
            # A run counts as missed only past this grace; an interval job should never miss.
            misfire_grace_time=max(1, int(seconds)),
            **first,
        )

    async def run(self, name: str, job: Job) -> None:
        """Run a job once and record its outcome (the scheduler calls this; so can tests)."""
        health = self.health.setdefault(name, JobHealth())
        try:
            await job()
        except JobFailed as exc:
            self._failed(name, health, str(exc), log_it=not exc.logged)
        except Exception as exc:
            if health.failing_since is None:
                # Not a failure the job knew how to report: the traceback once, when it starts.
                log.exception("job %s failed", name)
            self._failed(name, health, f"{type(exc).__name__}: {exc}")
        else:
            health.last_ok, health.failing_since, health.cause = self.clock.now(), None, ""
            self.outages.ok(f"job {name}")

    def _failed(self, name: str, health: JobHealth, cause: str, *, log_it: bool = True) -> None:
        health.failures += 1
        health.cause = cause
        if health.failing_since is None:
            health.failing_since = self.clock.now()
        if log_it:
            self.outages.failed(f"job {name}", cause)

    def failing(self) -> dict[str, JobHealth]:
        return {name: h for name, h in self.health.items() if h.failing}

    def start(self) -> None:
        """Must be called inside the running loop."""
        self._scheduler.start()

    async def stop(self, grace: float = 2.0) -> None:
        """Stop the scheduler before anything is cancelled: no new run starts, runs in flight
        get `grace` seconds, then are cancelled and end quietly. (APScheduler's own shutdown
        cancels its tasks, and one cancelled before it started is logged as a job that raised
        CancelledError, seen on a normal exit.)"""
        if not self._scheduler.running:
            return
        self._scheduler.pause()
        await asyncio.sleep(0)  # a run submitted just before the pause starts, and registers
        running = list(self._running)
        if running:
            _done, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        self._scheduler.shutdown(wait=False)

    def shutdown(self) -> None:
        """Stop at once, without waiting for runs in flight (tests; the daemon uses stop)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def jobs(self) -> list[str]:
        return [j.id for j in self._scheduler.get_jobs()]
