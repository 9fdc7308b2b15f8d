"""Notices when something holds the event loop, and names the commands that were running.

Everything the daemon does shares one event loop: a callback that computes for 300 ms (a
parser that backtracks on a hostile message, say) delays every other command, every socket's
heartbeat and the systemd watchdog by as much. This monitor is the guard that shows the next
such bug: a timer on the loop every TICK seconds measures how late it ran. When it ran more
than STALL seconds late, something held the loop at least that long; it logs ONE warning
naming the commands the bus was running (or had just finished: the culprit may have been
its last step), counts the stall, and keeps the largest lag for the metrics
(`chatopsd_event_loop_lag_max_seconds`, `chatopsd_event_loop_stalls_total`).

The warning also says how much of that time the loop's thread spent computing: close to the
lag means our code was busy; far below it means a blocking call, or a host starving us.

Cost: one timer callback every 50 ms (20 wake-ups a second, a few microseconds each) whether
or not anything happens, and nothing per command beyond what the bus records anyway. A hold
of over TICK + STALL (150 ms) is always caught; a shorter one over STALL, when it covers a
tick. Times are the loop's own (monotonic wall time), not the injected clock: this measures
the real loop, which a test's fake clock does not drive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("chatopsd.looplag")

TICK = 0.05  # seconds between checks
STALL = 0.1  # a lag over this is a stall: logged and counted
WINDOW = 60.0  # the metric's "largest recent lag" covers the last one to two windows


class Activity(Protocol):
    """What was running: the bus's commands."""

    def activity_mark(self) -> int:
        """A cheap marker, taken every tick."""
        ...

    def commands_since(self, mark: int) -> Sequence[str]:
        """Commands running now, or finished since `mark` was taken."""
        ...


@dataclass(frozen=True, slots=True)
class Stall:
    lag: float  # seconds the check ran late
    cpu: float  # seconds of that interval the loop's thread spent computing
    commands: tuple[str, ...]


class LoopLag:
    def __init__(self, activity: Activity, *, tick: float = TICK, stall: float = STALL) -> None:
        self.activity = activity
        self.tick, self.stall = tick, stall
        self.stalls = 0
        self.recent: deque[Stall] = deque(maxlen=16)
        self._worst = (0.0, 0.0)  # largest lag in (this window, the one before)
        self._window_start = 0.0
        self._due = 0.0
        self._cpu = 0.0
        self._mark = 0
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def largest_lag(self) -> float:
        """The largest lag over the last one to two minutes (seconds)."""
        return max(self._worst)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._window_start = loop.time()
        self._schedule(loop, loop.time())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()

    async def checked(self) -> None:
        """Returns after the next check: a barrier for tests ("has it looked yet?")."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self.tick
        self._cpu = time.thread_time()
        self._mark = self.activity.activity_mark()
        self._timer = loop.call_at(self._due, self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        lag = max(0.0, now - self._due)
        if now - self._window_start >= WINDOW:
            self._worst, self._window_start = (0.0, self._worst[0]), now
        if lag > self._worst[0]:
            self._worst = (lag, self._worst[1])
        if lag > self.stall:
            self._report(lag, time.thread_time() - self._cpu)
        self._schedule(loop, now)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _report(self, lag: float, cpu: float) -> None:
        commands = tuple(self.activity.commands_since(self._mark))
        self.stalls += 1
        self.recent.append(Stall(lag, cpu, commands))
        more = f" and {len(commands) - 5} more" if len(commands) > 5 else ""
        log.warning(
            "event loop held for at least %.0f ms (its thread computed %.0f ms of the last "
            "%.0f ms); commands running: %s",
            lag * 1000,
            cpu * 1000,
            (lag + self.tick) * 1000,
            ", ".join(commands[:5]) + more
            or "none (a scheduled job, a connector or the daemon itself)",
        )
