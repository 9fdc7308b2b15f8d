"""`!ic swap` requests: a window someone needs covered, and who took it. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from chatopsd.core.errors import UsageError
from chatopsd.core.values import moment

# A swap covers a shift or a few, asked for ahead of time: not a year, not next decade.
MAX_AHEAD = 90 * 86400  # the window starts within 90 days
MAX_LENGTH = 14 * 86400  # and lasts at most 14 days
FROM_HELP = "when: 2026-11-24T08:00 (UTC) or a delay like 2h; within 90 days"
UNTIL_HELP = "when it ends: a date-time, or a length like 8h; at most 14 days after the start"


def window(start_text: str, until_text: str, now: datetime) -> tuple[datetime, datetime]:
    """The (start, until) a request asks for, within the bounds above. Raises UsageError."""
    start = moment(start_text, now, ahead=MAX_AHEAD, what="the start")
    until = moment(until_text, start, ahead=MAX_LENGTH, what="the end", after="the start")
    if until <= start:
        raise UsageError("the window ends before it starts")
    if start < now - timedelta(minutes=1):
        raise UsageError("the window has already started")
    return start, until


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
