"""The status feature's store (implemented in store.py over SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatopsd.features.status.stalking_rules import Stalker, StalkerKey


class StalkerStore(Protocol):
    """Channels stalking the status, with the state last posted to each."""

    async def all(self) -> list[Stalker]: ...

    async def put(self, s: Stalker) -> None: ...

    async def delete(self, key: StalkerKey) -> None: ...

    async def mark(
        self, entries: Sequence[tuple[str, str, float, StalkerKey]], *, fence: int | None = None
    ) -> None:
        """Persist (fingerprint, verdict, posted_at) per stalker, atomically, under the
        poll's lease token (ha/fence.py: Superseded, nothing written, once it no longer
        holds)."""
        ...
