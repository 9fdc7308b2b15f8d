"""The event ledger: which chat events were already handled (dedupe across restarts, and the
claim that lets several instances share the work: exactly one handles each event)."""

from __future__ import annotations

import logging

from chatopsd.core.ports import Clock
from chatopsd.store.db import Database

log = logging.getLogger("chatopsd.store")


class _Unclaimed(Exception):
    pass


_CLAIM = (
    "INSERT INTO events (platform, event_id, seen_at) VALUES (?, ?, ?) "
    "ON CONFLICT (platform, event_id) DO NOTHING"
)


class SqlEventLedger:
    """Claims live in memory for speed and in the database for restarts and other instances.

    On SQLite (one process) memory is the truth, and the row is written through the group
    commit. On PostgreSQL the INSERT … ON CONFLICT DO NOTHING decides: the instance whose row
    went in owns the event; memory only short-cuts what this instance already saw.
    Platforms redeliver within minutes (Slack) or on reconnect (Mattermost resync), so ids
    older than `retention_s` are pruned from both.
    """

    def __init__(self, db: Database, clock: Clock, retention_s: float = 3 * 86400) -> None:
        self.db, self.clock, self.retention_s = db, clock, retention_s
        self._seen: dict[tuple[str, str], float] = {}
        self.failures = 0  # claims that could not be made (shared database unreachable)

    async def load(self) -> int:
        cutoff = self.clock.now().timestamp() - self.retention_s
        rows = await self.db.fetchall(
            "SELECT platform, event_id, seen_at FROM events WHERE seen_at >= ?", (cutoff,)
        )
        self._seen = {(r[0], r[1]): r[2] for r in rows}
        return len(self._seen)

    async def claim(self, platform: str, event_id: str) -> bool:
        key = (platform, event_id)
        if key in self._seen:
            return False
        now = self.clock.now().timestamp()
        self._seen[key] = now
        try:
            if self.db.shared:
                won = await self._claim_shared(platform, event_id, now)
            else:
                await self.db.write(_CLAIM, (platform, event_id, now))
                won = True
        except _Unclaimed:
            del self._seen[key]
            return False
        except BaseException:
            del self._seen[key]  # not recorded, so not claimed
            raise
        return won

    async def _claim_shared(self, platform: str, event_id: str, now: float) -> bool:
        try:
            return await self.db.execute(_CLAIM, (platform, event_id, now)) == 1
        except Exception as exc:
            # Cut off from the shared database: not ours. Another instance may claim and
            # answer it; answering "internal error" here would be a second, wrong answer.
            self.failures += 1
            log.error("cannot claim %s event %s (database: %s)", platform, event_id, exc)
            raise _Unclaimed from exc

    async def prune(self) -> int:
        cutoff = self.clock.now().timestamp() - self.retention_s
        await self.db.write("DELETE FROM events WHERE seen_at < ?", (cutoff,))
        old = [k for k, t in self._seen.items() if t < cutoff]
        for k in old:
            del self._seen[k]
        return len(old)


SqliteEventLedger = SqlEventLedger  # the former name, still imported elsewhere
