"""`!status`: what the monitoring says right now, from every configured source."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from chatopsd import redact
from chatopsd.core.commands import CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.messages import Priority, Reply
from chatopsd.core.ports import Clock
from chatopsd.core.times import age
from chatopsd.features.status.api import Overview, Reading, StatusSource, Verdict, combine

_ICONS = {
    Verdict.NORMAL: "✅",
    Verdict.DEGRADED: "⚠️",
    Verdict.UNKNOWN: "❓",
    Verdict.CRITICAL: "🔥",
}


class StatusBoard:
    """Reads every source at once, each under a deadline, and combines the verdicts."""

    def __init__(self, sources: Sequence[StatusSource], timeout: float = 10.0) -> None:
        self.sources = list(sources)
        self.timeout = timeout
        self.reads = 0
        self._inflight: asyncio.Task[list[Reading]] | None = None

    async def overview(self) -> Overview:
        return combine(await self.readings())

    async def readings(self) -> list[Reading]:
        """One reading per source, read concurrently; never raises.

        Callers that arrive while a read is running share it (a burst of `!status` in an
        incident, or the poll meeting a command, costs the monitoring one read)."""
        task = self._inflight
        if task is None or task.done():
            task = self._inflight = asyncio.get_running_loop().create_task(
                self._read_all(), name="status-read"
            )
        # shielded: one caller giving up must not cancel the read the others wait for
        return list(await asyncio.shield(task))

    async def _read_all(self) -> list[Reading]:
        self.reads += 1
        return list(await asyncio.gather(*(self._read(s) for s in self.sources)))

    async def _read(self, source: StatusSource) -> Reading:
        try:
            async with asyncio.timeout(self.timeout):
                return await source.read()
        except TimeoutError:
            return Reading(source.name, Verdict.UNKNOWN, error=f"no answer in {self.timeout:.0f} s")
        except Exception as exc:  # a source must never take the command down with it
            error = redact.text(f"{type(exc).__name__}: {exc}")  # a URL's secrets stay out
            return Reading(source.name, Verdict.UNKNOWN, error=error)


class StatusHandler:
    def __init__(self, board: StatusBoard, clock: Clock | None = None) -> None:
        self.board = board
        self.clock = clock

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec(("status",), "the system status from monitoring", self.status)]

    async def status(self, call: Call) -> Reply:
        now = self.clock.now() if self.clock is not None else None
        return render(await self.board.overview(), now=now)


def render(overview: Overview, top: int = 5, now: datetime | None = None) -> Reply:
    """The overview as a reply: verdict, the firing alerts behind it, unreadable sources."""
    if not overview.readings:
        return Reply(
            title=f"{_ICONS[Verdict.UNKNOWN]} Status: UNKNOWN",
            text="No status sources are configured ([[status.sources]]).",
        )
    lines: list[str] = []
    counts = Counter(a.verdict for a in overview.alerts)
    if counts:
        lines.append(
            ", ".join(
                f"{n} {v.value.lower()}"
                for v, n in sorted(counts.items(), key=lambda kv: -kv[0].rank)
            )
            + " firing"
        )
    by_name = Counter(a.name for a in overview.alerts)
    shown: list[str] = []
    for alert in overview.alerts:
        if alert.name in shown:
            continue
        shown.append(alert.name)
        if len(shown) > top:
            lines.append(f"…and {len(by_name) - top} more")
            break
        times = f" ×{by_name[alert.name]}" if by_name[alert.name] > 1 else ""
        about = f": {alert.summary}" if alert.summary else ""
        # how long it has been firing (the oldest of its instances), when the source says
        starts = [a.since for a in overview.alerts if a.name == alert.name and a.since]
        firing = f"firing {age(now - min(starts))}, " if now and starts else ""
        lines.append(f"{alert.verdict.value} {alert.name}{times}{about} ({firing}{alert.source})")
    for problem in overview.problems:
        lines.append(f"⚠ cannot check {problem.source}: {problem.error}")
    if not lines:
        lines.append("All sources report normal.")
    return Reply(
        title=f"{_ICONS[overview.verdict]} Status: {overview.verdict.value}",
        text="\n".join(lines),
        priority=Priority.STATUS,
    )
