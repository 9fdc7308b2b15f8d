"""Scheduled jobs on the daemon's own loop (APScheduler 3.x AsyncIOScheduler).

Every job: named, at most one run at a time, missed runs coalesced into one, and failures
logged with the job's name. Job bodies are plain async functions that take the time from the
injected Clock, so tests call them directly instead of waiting on the wall clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger("chatopsd.scheduler")

Job = Callable[[], Awaitable[None]]


class Scheduler:
    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self.failures: dict[str, int] = {}
        # When each job last finished without raising (health: PagerDuty refresh, status poll).
        self.last_ok: dict[str, datetime] = {}

    def every(self, name: str, seconds: float, job: Job, *, run_now: bool = True) -> None:
        async def guarded() -> None:
            try:
                await job()
                self.last_ok[name] = datetime.now(UTC)
            except Exception:
                self.failures[name] = self.failures.get(name, 0) + 1
                log.exception("job %s failed", name)

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

    def start(self) -> None:
        """Must be called inside the running loop."""
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def jobs(self) -> list[str]:
        return [j.id for j in self._scheduler.get_jobs()]
