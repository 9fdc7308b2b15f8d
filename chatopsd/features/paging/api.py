"""On-call domain types and ports: who is on call, and paging them. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Group = Literal["ic", "responders"]
# A roster's key: a Group, or "service:<name>" for a service in pagerduty.services.
RosterKey = str


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    email: str = ""
    phones: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OnCall:
    """One person on call on one schedule. `role` is e.g. "primary", "backup", "shadow"."""

    person: Person
    schedule_id: str
    schedule_name: str
    role: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Roster:
    """Who is on call for a group, with how fresh the data is.

    `as_of` is the last successful refresh; `failing_since`/`error` are set while refreshes
    fail, so answers can say "as of 14:02, PagerDuty unreachable since 14:05".
    """

    entries: tuple[OnCall, ...]
    as_of: datetime | None
    stale: bool = False
    failing_since: datetime | None = None
    error: str | None = None
    configured: bool = True  # False: there is no PagerDuty to ask (not "nobody on call")

    @property
    def answers(self) -> bool:
        """The cache can say who is on call: it has data, and the data is fresh."""
        return self.configured and self.as_of is not None and not self.stale

    def people(self) -> list[Person]:
        seen: dict[str, Person] = {}
        for entry in self.entries:
            seen.setdefault(entry.person.id, entry.person)
        return list(seen.values())


@dataclass(frozen=True, slots=True)
class PageResult:
    """A page that went out: the incident and who it was assigned to."""

    incident_id: str
    url: str
    paged: tuple[Person, ...]
    duplicate: bool = False
    notes: tuple[str, ...] = field(default=())


class Directory(Protocol):
    """On-call data, always from the cache: never calls the outside world per request."""

    async def roster(self, group: RosterKey) -> Roster: ...

    async def find(self, query: str, *, search: bool = True) -> Sequence[Person]:
        """People matching an email, chat id ("slack:U123") or part of a name; `search=False`
        looks in the cache only.

        Raises Unavailable when the answer "nobody" could be wrong because the directory
        could not look (PagerDuty unreachable and the cache has no match)."""
        ...


class Pager(Protocol):
    async def page(self, people: Sequence[Person], summary: str, key: str) -> PageResult:
        """Page these people once per `key`; nobody listed means the service's escalation
        policy decides. Raises Unavailable (with what failed) on failure."""
        ...


@dataclass(frozen=True, slots=True)
class PageRecord:
    """A page that went out, so a second `!ic page` soon after can say so instead of paging."""

    target: str  # "ic", "responders", or "person:<id>"
    at: datetime
    actor: str
    url: str


class PageLog(Protocol):
    async def last(self, target: str) -> PageRecord | None: ...

    async def record(self, record: PageRecord) -> None: ...


class MemoryPageLog:
    """PageLog for the demo and tests without a database."""

    def __init__(self) -> None:
        self._last: dict[str, PageRecord] = {}

    async def last(self, target: str) -> PageRecord | None:
        return self._last.get(target)

    async def record(self, record: PageRecord) -> None:
        self._last[record.target] = record
