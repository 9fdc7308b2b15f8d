"""The status page feature's store (implemented in store.py over SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Publication:
    """What one incident shows on the public status page."""

    incident_id: str
    page_incident_id: str | None
    shortlink: str | None
    status: str | None  # confirmed by the page
    wanted: str  # last queued
    components: tuple[str, ...]
    unpublished: bool


@dataclass(frozen=True, slots=True)
class QueuedCall:
    """A status page call still to make, from the durable queue."""

    id: int
    incident_id: str
    action: str  # create | update
    payload: dict[str, Any]
    actor: str
    actor_name: str
    attempts: int
    next_at: datetime
    last_error: str | None
    maybe_done: bool  # the last attempt may have taken effect (no clear answer, or a crash)


class Publications(Protocol):
    """Status page publications and the durable queue of calls still to make. Any instance
    queues; only the lease holder sends, and its worker's writes take its fencing token
    (`fence`): refused with Superseded once the token is no longer the lease's."""

    async def get(self, incident_id: str) -> Publication | None: ...

    async def start(
        self,
        incident_id: str,
        components: list[str],
        payload: dict[str, Any],
        actor: tuple[str, str],
        at: datetime,
    ) -> None:
        """Record the decision to publish and queue the create call, atomically."""
        ...

    async def queue_update(
        self,
        incident_id: str,
        wanted: str,
        payload: dict[str, Any],
        actor: tuple[str, str],
        at: datetime,
    ) -> None: ...

    async def unpublish(self, incident_id: str, at: datetime) -> int:
        """Stop publishing and cancel what is still queued; returns how many were."""
        ...

    async def heads(self) -> list[QueuedCall]:
        """The oldest pending call of each incident (calls of one incident go in order)."""
        ...

    async def pending_count(self, incident_id: str) -> int: ...

    async def last_error(self, incident_id: str) -> str | None: ...

    async def attempt_failed(
        self,
        call_id: int,
        error: str,
        retry_at: datetime,
        maybe_done: bool,
        *,
        fence: int | None = None,
    ) -> None: ...

    async def note_attempt(self, call_id: int, *, fence: int | None = None) -> bool:
        """The claim of a call, before its request goes out. False: no longer pending (do
        not send); Superseded: the fence no longer holds (send nothing)."""
        ...

    async def succeeded(
        self,
        call: QueuedCall,
        page_incident_id: str,
        shortlink: str | None,
        status: str,
        at: datetime,
        *,
        fence: int | None = None,
    ) -> None: ...

    async def cancel(self, call_id: int, reason: str, at: datetime) -> None: ...
