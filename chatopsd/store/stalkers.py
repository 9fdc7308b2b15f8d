"""Stalkers in SQLite (migration 0003): survive kill -9, with the state last posted to each."""

from __future__ import annotations

from collections.abc import Sequence

from chatopsd.core.stalking import Stalker, StalkerKey
from chatopsd.store.sqlite import Database

_MARK = (
    "UPDATE stalkers SET fingerprint = ?, verdict = ?, posted_at = ? "
    "WHERE platform = ? AND channel = ? AND thread = ?"
)


class SqliteStalkerStore:
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
            "verdict, posted_at, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (platform, channel, thread) DO UPDATE SET "
            "interval_seconds = excluded.interval_seconds, fingerprint = excluded.fingerprint, "
            "verdict = excluded.verdict, posted_at = excluded.posted_at",
            (
                s.platform,
                s.channel,
                s.thread,
                s.interval,
                s.fingerprint,
                s.verdict,
                s.posted_at,
                s.created_at,
                s.created_by,
            ),
        )

    async def delete(self, key: StalkerKey) -> None:
        await self.db.write(
            "DELETE FROM stalkers WHERE platform = ? AND channel = ? AND thread = ?", key
        )

    async def mark(self, entries: Sequence[tuple[str, str, float, StalkerKey]]) -> None:
        """Persist (fingerprint, verdict, posted_at) per stalker key, in one transaction
        (one executemany however many stalkers)."""
        if entries:
            await self.db.write_many(
                (_MARK, (fp, verdict, at, *key)) for fp, verdict, at, key in entries
            )
