"""The identity service's store of `!pd link` claims (implemented in store.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from chatopsd.core.identity import Link


class IdentityLinks(Protocol):
    """`!pd link` claims, and whether each was confirmed (core/identity.py has the rules)."""

    async def claim(
        self, platform: str, user_id: str, email: str, request: str, expires: datetime
    ) -> None:
        """Record an unconfirmed claim (replacing this identity's earlier link, if any)."""
        ...

    async def confirm(self, platform: str, user_id: str, email: str, by: str) -> bool:
        """Mark the pending claim confirmed, only if it is still a claim to this email."""
        ...

    async def grant(self, platform: str, user_id: str, email: str, by: str) -> None:
        """Write the link confirmed (an admin approved it), whatever was there."""
        ...

    async def link(self, platform: str, user_id: str) -> Link | None: ...

    async def by_request(self, request: str) -> Link | None: ...

    async def holders(self, email: str) -> list[Link]:
        """Every link (confirmed or not) to this email."""
        ...

    async def drop(self, platform: str, user_id: str) -> bool: ...
