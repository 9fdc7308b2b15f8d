"""Follow-up actions of incidents (SQLite or PostgreSQL), with the ticket each became.

Export is decided before it is sent: `claim` marks a follow-up 'sending' durably, then the
ticket is created, then `ticket_created` stores its link. A crash between the two leaves it
'sending' (unconfirmed), which is never sent again on its own: a duplicate ticket is worse
than asking a person to look (see commands.py).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from chatopsd.features.followups.ports import FollowUp
from chatopsd.store.db import Database

_ADD = (
    "INSERT INTO incident_followups (incident_id, n, text, owner, added_by, added_at) "
    "SELECT $1, COALESCE(MAX(n), 0) + 1, $2, $3, $4, $5 FROM incident_followups "
    "WHERE incident_id = $6 RETURNING n"
)


def _row(r: sqlite3.Row) -> FollowUp:
    return FollowUp(
        r["incident_id"],
        int(r["n"]),
        r["text"],
        r["owner"],
        r["added_by"],
        datetime.fromtimestamp(r["added_at"], UTC),
        None if r["done_at"] is None else datetime.fromtimestamp(r["done_at"], UTC),
        r["export_state"],
        r["ticket_key"],
        r["ticket_url"],
    )


class SqlFollowUps:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, incident_id: str, text: str, owner: str | None, added_by: str, at: datetime
    ) -> int:
        """Store a follow-up; returns its number within the incident. The number is chosen
        in the INSERT itself; two instances adding at once collide on the primary key and
        the loser takes the next number."""
        params = (incident_id, text, owner, added_by, at.timestamp(), incident_id)
        for attempt in range(5):
            try:
                row = await self.db.transaction(lambda tx: tx.fetchone(_ADD, params))
            except Exception as exc:
                if attempt == 4 or not _duplicate(exc):
                    raise
                continue
            assert row is not None  # INSERT … RETURNING always returns the row
            return int(row[0])
        raise AssertionError("unreachable")

    async def list(self, incident_id: str) -> list[FollowUp]:
        rows = await self.db.fetchall(
            "SELECT * FROM incident_followups WHERE incident_id = $1 ORDER BY n", (incident_id,)
        )
        return [_row(r) for r in rows]

    async def get(self, incident_id: str, n: int) -> FollowUp | None:
        row = await self.db.fetchone(
            "SELECT * FROM incident_followups WHERE incident_id = $1 AND n = $2", (incident_id, n)
        )
        return None if row is None else _row(row)

    async def done(self, incident_id: str, n: int, at: datetime) -> None:
        await self.db.write(
            "UPDATE incident_followups SET done_at = $1 WHERE incident_id = $2 AND n = $3",
            (at.timestamp(), incident_id, n),
        )

    async def claim(self, incident_id: str, n: int) -> bool:
        """Decide to send: durable before the ticket is created; False when it was decided
        already (by another command, or another instance)."""
        changed = await self.db.execute(
            "UPDATE incident_followups SET export_state = 'sending' "
            "WHERE incident_id = $1 AND n = $2 AND export_state IS NULL",
            (incident_id, n),
        )
        return changed == 1

    async def release(self, incident_id: str, n: int) -> None:
        """The tracker certainly did not create it (it answered with an error): may retry."""
        await self.db.write(
            "UPDATE incident_followups SET export_state = NULL "
            "WHERE incident_id = $1 AND n = $2 AND export_state = 'sending'",
            (incident_id, n),
        )

    async def ticket_created(self, incident_id: str, n: int, key: str, url: str) -> None:
        await self.db.write(
            "UPDATE incident_followups SET export_state = 'sent', ticket_key = $1, "
            "ticket_url = $2 WHERE incident_id = $3 AND n = $4",
            (key, url, incident_id, n),
        )


def _duplicate(exc: Exception) -> bool:
    """A primary-key collision, on either database."""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    return type(exc).__name__ == "UniqueViolationError"  # asyncpg, imported only with PG
