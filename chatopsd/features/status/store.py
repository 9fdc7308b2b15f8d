"""Stalkers (migration 0003): survive kill -9, with the state last posted to each.

`mark` is fenced (ha/fence.py): with several instances it is written only while the poll's
lease token is still the lease's, checked in the same transaction, so a leader that was paused
past its lease cannot record (and then post) a stale change after a newer leader took over.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatopsd.features.status.stalking_rules import Stalker, StalkerKey
from chatopsd.ha.fence import write_fenced
from chatopsd.store.db import Database

_MARK = (
    "UPDATE stalkers SET fingerprint = $1, verdict = $2, posted_at = $3 "
    "WHERE platform = $4 AND channel = $5 AND thread = $6"
)


class SqlStalkerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[Stalker]:
        rows = await self.db.fetchall(
            "SELECT platform, channel, thread, interval_seconds, fingerprint, verdict, "
            "posted_at, created_at, created_by FROM stalkers"
        )
        return [Stalker(*tuple(row)) for row in rows]

    async def put(self, s: Stalker) -> None:
        await self.db.write(
            "INSERT INTO stalkers (platform, channel, thread, interval_seconds, fingerprint, "
            "verdict, posted_at, created_at, created_by) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (platform, channel, thread) DO UPDATE SET "
            "interval_seconds = excluded.interval_seconds, fingerprint = excluded.fingerprint, "
            "verdict = excluded.verdict, posted_at = excluded.posted_at",
            (
                s.platform,
                s.channel,
                s.thread,
                float(s.interval),
                s.fingerprint,
                s.verdict,
                float(s.posted_at),
                float(s.created_at),
                s.created_by,
            ),
        )

    async def delete(self, key: StalkerKey) -> None:
        await self.db.write(
            "DELETE FROM stalkers WHERE platform = $1 AND channel = $2 AND thread = $3", key
        )

    async def mark(
        self, entries: Sequence[tuple[str, str, float, StalkerKey]], *, fence: int | None = None
    ) -> None:
        """Persist (fingerprint, verdict, posted_at) per stalker key, in one transaction,
        under the poll's lease token: Superseded, nothing written, once it no longer holds."""
        if not entries:
            return
        params = [(fp, verdict, float(at), *key) for fp, verdict, at, key in entries]
        await write_fenced(self.db, [(_MARK, p) for p in params], fence)
