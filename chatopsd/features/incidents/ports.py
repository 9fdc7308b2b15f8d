"""The incidents feature's store (implemented in store.py over SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from chatopsd.core.messages import Sent
from chatopsd.features.incidents.api import Home
from chatopsd.features.incidents.rules import Incident, TimelineEntry


class IncidentStore(Protocol):
    """Incidents, their timelines, homes (channel or thread) and the messages we edit."""

    async def create(
        self, year: int, make: Callable[[str], tuple[Incident, TimelineEntry]]
    ) -> Incident:
        """Allocate the next id of `year`, build the incident with it, store it and its entry."""
        ...

    async def save(self, incident: Incident, entry: TimelineEntry) -> None: ...

    async def change(
        self, incident_id: str, step: Callable[[Incident], tuple[Incident, TimelineEntry]]
    ) -> tuple[Incident, Incident] | None:
        """Read-change-store in one transaction with the row locked: (before, after)."""
        ...

    async def get(self, incident_id: str) -> Incident | None: ...

    async def open(self) -> list[Incident]: ...

    async def resolved(self) -> list[Incident]:
        """Resolved and not yet closed."""
        ...

    async def timeline(self, incident_id: str) -> list[TimelineEntry]: ...

    async def last_update(self, incident_id: str) -> TimelineEntry | None: ...

    async def bind_home(self, incident_id: str, home: Home) -> None: ...

    async def home(self, incident_id: str) -> Home | None: ...

    async def is_open_incident_channel(self, platform: str, channel: str) -> bool: ...

    async def incident_at(self, platform: str, channel: str, thread: str | None) -> str | None: ...

    async def remember(self, incident_id: str, purpose: str, sent: Sent) -> None: ...

    async def messages(self, incident_id: str, purpose: str) -> list[Sent]: ...

    async def incident_for_message(self, platform: str, message_id: str) -> str | None: ...

    async def last_pulse(self, incident_id: str) -> datetime | None: ...

    async def mark_pulse(self, incident_id: str, at: datetime) -> None: ...
