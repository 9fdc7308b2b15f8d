"""The approvals feature's store (implemented in store.py over SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from chatopsd.features.approvals.rules import Action, Person
from chatopsd.features.approvals.rules import State as ApprovalState


class ApprovalStore(Protocol):
    """Approval and confirmation requests and their votes."""

    async def create(self, a: Action) -> None: ...

    async def set_message(self, action_id: str, message_id: str) -> None: ...

    async def get(self, action_id: str) -> Action | None: ...

    async def by_message(self, platform: str, message_id: str) -> Action | None: ...

    async def pending_due(self, now: datetime) -> list[Action]: ...

    async def pending(self) -> list[Action]: ...

    async def undispatched(self) -> list[Action]: ...

    async def vote(
        self, action_id: str, voter: Person, name: str, vote: str, at: datetime
    ) -> None: ...

    async def decide(self, action_id: str, state: ApprovalState, by: str, at: datetime) -> bool:
        """Move a pending request to `state`; False if it was no longer pending (another
        instance, or another approver, decided first)."""
        ...

    async def mark_dispatched(self, action_id: str) -> bool:
        """Claim the run of an approved request; False if it was already dispatched."""
        ...

    async def set_result(self, action_id: str, result: str) -> None: ...

    async def result(self, action_id: str) -> str | None: ...
