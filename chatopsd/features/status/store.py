"""Stalkers (migration 0003): survive kill -9, with the state last posted to each.

`mark` with a fencing token (several instances): the write happens only while that token is
still the lease's, checked in the same transaction, so a leader that was paused past its
lease cannot record (and then post) a stale change after a newer leader took over. On a
shared database a mark without a token (the lease lapsed mid-poll) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatopsd.features.status.stalking_rules import Stalker, StalkerKey
from chatopsd.store.db import Database, Op, Tx

_MARK = (
    "UPDATE stalkers SET fingerprint = $1, verdict = $2, posted_at = $3 "
    "WHERE platform = $4 AND channel = $5 AND thread = $6"
)


async def fence_holds(tx: Tx, token: int) -> bool:
    """Whether `token` is still the lease's; on PostgreSQL the row stays share-locked until
    the transaction ends, so a takeover waits for this write instead of racing it."""
    lock = " FOR SHARE" if tx.dialect == "postgresql" else ""
    row = await tx.fetchone(f"SELECT token FROM lease WHERE id = 1{lock}")
    return row is not None and int(row[0]) == token


async def write_fenced(db: Database, ops: Sequence[Op], token: int) -> bool:
    """Write `ops` in one transaction, only while `token` is the lease's: False (nothing
    written) once another instance has taken the lease over. Every fenced singleton write
    goes through here; what a write without a token means is the caller's to say."""

    async def fenced(tx: Tx) -> bool:
        if not await fence_holds(tx, token):
            return False
        for sql, params in ops:
            await tx.execute(sql, params)
        return True

    return await db.transaction(fenced)


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
    ) -> bool:
        """Persist (fingerprint, verdict, posted_at) per stalker key, in one transaction
        (one executemany however many stalkers). False if the fence no longer holds.

        On a shared database only the lease holder marks, so no token means no lease (it
        lapsed while the poll read the sources): refused, never written unfenced."""
        if not entries:
            return True
        if fence is None and self.db.shared:
            return False
        params = [(fp, verdict, float(at), *key) for fp, verdict, at, key in entries]
        if fence is None:
            await self.db.write_many((_MARK, p) for p in params)
            return True

        async def fenced(tx: Tx) -> bool:
            if not await fence_holds(tx, fence):
                return False
            for p in params:
                await tx.execute(_MARK, p)
            return True

        return await self.db.transaction(fenced)


SqliteStalkerStore = SqlStalkerStore  # the former name, still imported elsewhere
