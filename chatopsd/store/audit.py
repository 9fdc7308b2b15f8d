"""The audit trail in SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from chatopsd.core.ports import AuditEntry
from chatopsd.store.sqlite import Database

_COLUMNS = (
    "at, platform, channel, thread, actor, actor_name, kind, text, command, outcome, "
    "duration_ms, event_id, ref"
)
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"


class SqliteAuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, entry: AuditEntry) -> None:
        await self.db.write(
            _INSERT,
            (
                entry.at.timestamp(),
                entry.platform,
                entry.channel,
                entry.thread,
                entry.actor,
                entry.actor_name,
                entry.kind,
                entry.text,
                entry.command,
                entry.outcome,
                entry.duration_ms,
                entry.event_id,
                entry.ref,
            ),
        )

    async def since(self, since: datetime | None, limit: int = 1000) -> Sequence[AuditEntry]:
        cutoff = since.timestamp() if since else 0.0
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM audit WHERE at >= ? ORDER BY id LIMIT ?", (cutoff, limit)
        )
        return [AuditEntry(datetime.fromtimestamp(r[0], UTC), *r[1:]) for r in rows]
