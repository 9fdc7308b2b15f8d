"""The on-call feature's stores (implemented in store.py over SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatopsd.core.messages import Destination
from chatopsd.features.oncall.handoff_rules import OwedPost, Step, Watched


class OnCallPosts(Protocol):
    """What on-call push keeps durably: handoffs announced, reminders handled, posts owed.

    Singleton work: `decide`, `remind` and `claim` take the leader's fencing token and write
    only while it is still the lease's (ha/fence.py: Superseded otherwise)."""

    async def watched(self) -> dict[str, Watched]: ...

    async def decide(
        self,
        steps: Sequence[Step],
        destinations: Sequence[Destination],
        *,
        fence: int | None = None,
    ) -> None:
        """Store each watch's new state and the announcements it owes, atomically."""
        ...

    async def owed(self) -> list[OwedPost]: ...

    async def claim(self, post: OwedPost, *, fence: int | None = None) -> str | None:
        """Take the sending of one owed post (the claim's id; Superseded once the fence no
        longer holds), or None: it was sent meanwhile, or another instance is sending it."""
        ...

    async def release(self, key: str, claim: str) -> None: ...

    async def sent(self, key: str, message_id: str) -> None: ...

    async def reminded(self, keys: Sequence[str]) -> set[str]: ...

    async def remind(
        self,
        handled: Sequence[str],
        dms: Sequence[tuple[str, str, str, str]],
        *,
        fence: int | None = None,
    ) -> None:
        """Record handled reminder keys and the DMs they owe, atomically."""
        ...


class KeptState(Protocol):
    """What was last written to each topic / user group kept true, fenced like OnCallPosts."""

    async def written(self) -> dict[str, str]: ...

    async def holds(self, fence: int | None) -> bool:
        """Whether a write may go out now (the fence still holds)."""
        ...

    async def record(self, target: str, value: str, *, fence: int | None = None) -> None: ...

    async def forget(self, target: str) -> None:
        """A write went out unrecorded: have the next leader write it again."""
        ...
