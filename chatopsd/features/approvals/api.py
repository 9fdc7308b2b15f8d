"""What other features use of approvals: ask for an approval or a confirmation before a
command runs, recognise the granted command when it comes back through the bus, and record
how it ended. The rules that decide what a command needs are pure and shared as they are."""

from __future__ import annotations

from typing import Protocol

from chatopsd.core.context import Call
from chatopsd.features.approvals.rules import (
    Action,
    ActionKind,
    Rule,
    command_line,
    new_id,
    requirement,
)
from chatopsd.runtime import ServiceKey

__all__ = [
    "APPROVALS",
    "Action",
    "ActionKind",
    "Approvals",
    "Rule",
    "command_line",
    "new_id",
    "requirement",
]


class Approvals(Protocol):
    async def request(
        self,
        call: Call,
        *,
        kind: ActionKind,
        command: str,
        summary: str,
        needed: int = 1,
        role: str | None = None,
    ) -> Action:
        """Store a request and post it; the command comes back through the bus, as its
        requester, once it is granted."""
        ...

    async def grant_for(self, call: Call, command: str) -> Action | None:
        """The granted request this call carries out, if it is one."""
        ...

    async def record_result(self, action: Action, result: str) -> None: ...


APPROVALS: ServiceKey[Approvals] = ServiceKey("approvals")
