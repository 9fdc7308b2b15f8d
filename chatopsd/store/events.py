"""The event ledger: which chat events were already handled (dedupe across restarts)."""

from __future__ import annotations

from chatopsd.core.ports import Clock
from chatopsd.store.sqlite import Database


class SqliteEventLedger:
    """Claims live in memory for speed and in SQLite for restarts.

    Platforms redeliver within minutes (Slack) or on reconnect (Mattermost resync), so ids
    older than `retention_s` are pruned from both. Every event is claimed (before the rate
    limiter), so a flood of fresh ids must not grow memory without end: past `max_events`
    the oldest claims are forgotten first (they are the least likely to be redelivered).
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        retention_s: float = 3 * 86400,
        max_events: int = 50_000,
    ) -> None:
        self.db, self.clock, self.retention_s = db, clock, retention_s
        self.max_events = max_events
        self._seen: dict[tuple[str, str], float] = {}  # insertion order = claim order

    def __len__(self) -> int:
        return len(self._seen)

    async def load(self) -> int:
        cutoff = self.clock.now().timestamp() - self.retention_s
        rows = await self.db.fetchall(
            "SELECT platform, event_id, seen_at FROM events WHERE seen_at >= ? "
            "ORDER BY seen_at DESC LIMIT ?",
            (cutoff, self.max_events),
        )
        rows.reverse()  # oldest first, like claims made in this run
        self._seen = {(r[0], r[1]): r[2] for r in rows}
        return len(self._seen)

    async def claim(self, platform: str, event_id: str) -> bool:
        key = (platform, event_id)
        if key in self._seen:
            return False
        now = self.clock.now().timestamp()
        self._seen[key] = now
        while len(self._seen) > self.max_events:
            del self._seen[next(iter(self._seen))]
        try:
            await self.db.write(
                "INSERT OR IGNORE INTO events (platform, event_id, seen_at) VALUES (?, ?, ?)",
                (platform, event_id, now),
            )
        except BaseException:
            del self._seen[key]  # not recorded, so not claimed
            raise
        return True

    async def prune(self) -> int:
        cutoff = self.clock.now().timestamp() - self.retention_s
        await self.db.write("DELETE FROM events WHERE seen_at < ?", (cutoff,))
        # and beyond the size bound, oldest first (the table is what the next run loads)
        await self.db.write(
            "DELETE FROM events WHERE seen_at < "
            "(SELECT seen_at FROM events ORDER BY seen_at DESC LIMIT 1 OFFSET ?)",
            (self.max_events - 1,),
        )
        old = [k for k, t in self._seen.items() if t < cutoff]
        for k in old:
            del self._seen[k]
        return len(old)
