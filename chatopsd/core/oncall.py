"""On-call domain types and ports: who is on call, and paging them. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Group = Literal["ic", "responders"]


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    email: str = ""
    phones: tuple[str, ...] = ()
    chat_ids: tuple[str, ...] = ()  # "platform:user_id" the person is known by in chat


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

    async def roster(self, group: Group) -> Roster: ...

    async def find(self, query: str) -> Sequence[Person]:
        """People matching an email, chat id ("slack:U123") or part of a name."""
        ...


class Pager(Protocol):
    async def page(self, people: Sequence[Person], summary: str, key: str) -> PageResult:
        """Page these people once per `key`. Raises Unavailable (with what failed) on failure."""
        ...
