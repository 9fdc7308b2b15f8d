"""`!ic swap` requests: a window someone needs covered, and who took it. Pure types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Swap:
    id: int
    schedule_id: str
    start: datetime
    until: datetime
    reason: str
    requester: str  # "platform:user_id"
    requester_name: str
    platform: str
    channel: str
    message_id: str | None
    expires: datetime
    taker: str | None = None
    taker_name: str | None = None


class SwapStore(Protocol):
    async def open(self, swap: Swap) -> int:
        """Record a new request; its id."""
        ...

    async def posted(self, swap_id: int, message_id: str) -> None: ...

    async def get(self, swap_id: int) -> Swap | None: ...

    async def claim(self, swap_id: int, taker: str, taker_name: str, now: datetime) -> bool:
        """Take an open, unexpired request; False if someone has it or it expired."""
        ...

    async def release(self, swap_id: int, taker: str) -> None:
        """Undo a claim whose override PagerDuty refused."""
        ...

    async def expired(self, now: datetime) -> list[Swap]:
        """Open requests past their expiry whose message still shows them open."""
        ...

    async def close(self, swap_id: int) -> None: ...
