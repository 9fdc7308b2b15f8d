"""The follow-ups feature's store (implemented in store.py over SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up action of an incident, and the ticket it became."""

    incident_id: str
    n: int
    text: str
    owner: str | None
    added_by: str
    added_at: datetime
    done_at: datetime | None
    export_state: str | None  # None | sending | sent
    ticket_key: str | None
    ticket_url: str | None


class FollowUpStore(Protocol):
    """Follow-ups per incident. Export is decided (`claim`) durably before the ticket is
    created, so a crash or a second instance never creates it twice."""

    async def add(
        self, incident_id: str, text: str, owner: str | None, added_by: str, at: datetime
    ) -> int:
        """Store a follow-up; returns its number within the incident (unique across
        instances)."""
        ...

    async def list(self, incident_id: str) -> list[FollowUp]: ...

    async def get(self, incident_id: str, n: int) -> FollowUp | None: ...

    async def done(self, incident_id: str, n: int, at: datetime) -> None: ...

    async def claim(self, incident_id: str, n: int) -> bool:
        """Decide to send it; False if it was already decided (here or by another instance)."""
        ...

    async def release(self, incident_id: str, n: int) -> None: ...

    async def ticket_created(self, incident_id: str, n: int, key: str, url: str) -> None: ...
