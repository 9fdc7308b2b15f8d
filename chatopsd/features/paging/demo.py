"""Demo data for a daemon with no accounts: an on-call roster, a pager, a status source.

Used only when no PagerDuty section / status source is configured, so `!ic` and `!status`
answer out of the box on the console. Everything it says is marked as demo data.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from chatopsd.core.errors import Unavailable
from chatopsd.core.ports import Clock
from chatopsd.features.paging.api import Group, OnCall, PageResult, Person, Roster
from chatopsd.features.status.api import Alert, Reading, Verdict

_PEOPLE = {
    "ada": Person("PDEMO01", "Ada Lovelace", "ada@example.com", ("+1 555 0100",)),
    "grace": Person("PDEMO02", "Grace Hopper", "grace@example.com", ("+1 555 0101",)),
    "alan": Person("PDEMO03", "Alan Turing", "alan@example.com", ("+1 555 0102",)),
    "edsger": Person("PDEMO04", "Edsger Dijkstra", "edsger@example.com", ("+1 555 0103",)),
    "barbara": Person("PDEMO05", "Barbara Liskov", "barbara@example.com", ("+1 555 0104",)),
}
_ROSTERS: dict[Group, tuple[tuple[str, str, str], ...]] = {
    "ic": (
        ("ada", "IC Primary (demo)", "primary"),
        ("grace", "IC Backup (demo)", "backup"),
        ("alan", "IC Primary (demo)", "shadow"),
    ),
    "responders": (
        ("edsger", "Payments (demo)", "primary"),
        ("barbara", "Database (demo)", "primary"),
    ),
}


class DemoDirectory:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._started: datetime = clock.now()

    async def roster(self, group: str) -> Roster:
        # demo shifts hand over at the next 09:00 UTC, so `!ic` shows a shift end
        now = self.clock.now()
        handover = now.replace(hour=9, minute=0, second=0, microsecond=0)
        if handover <= now:
            handover += timedelta(days=1)
        entries = tuple(
            OnCall(_PEOPLE[who], f"DEMO-{group}", schedule, role, handover)
            for who, schedule, role in _ROSTERS.get(group, ())  # type: ignore[call-overload]
        )
        return Roster(entries, as_of=self._started)

    async def find(self, query: str, *, search: bool = True) -> Sequence[Person]:
        q = query.strip().lower().lstrip("@")
        exact = [p for p in _PEOPLE.values() if q in (p.email, p.id.lower())]
        return exact or [p for p in _PEOPLE.values() if q and q in p.name.lower()]


class DemoPager:
    """Pretends to page: nothing leaves the machine."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._keys: dict[str, PageResult] = {}

    async def page(self, people: Sequence[Person], summary: str, key: str) -> PageResult:
        if key in self._keys:
            previous = self._keys[key]
            return PageResult(previous.incident_id, previous.url, previous.paged, duplicate=True)
        n = next(self._ids)
        result = PageResult(
            f"DEMO{n:04d}",
            f"https://example.invalid/incidents/DEMO{n:04d}",
            tuple(people),
            notes=("(demo mode: nobody was really paged)",),
        )
        self._keys[key] = result
        return result


class DemoStatusSource:
    name = "demo"

    async def read(self) -> Reading:
        return Reading(
            self.name,
            Verdict.DEGRADED,
            alerts=(
                Alert("DemoHighLatency", Verdict.DEGRADED, "p99 latency above 800 ms", self.name),
            ),
        )


class NotConfigured:
    """Stands in for PagerDuty when it is not configured: says so instead of inventing people."""

    _why = "PagerDuty is not configured (add a [pagerduty] section to the config)"

    async def roster(self, group: str) -> Roster:
        return Roster((), as_of=None, error=self._why, configured=False)

    async def find(self, query: str, *, search: bool = True) -> Sequence[Person]:
        raise Unavailable(self._why)

    async def page(self, people: Sequence[Person], summary: str, key: str) -> PageResult:
        raise Unavailable(self._why)
