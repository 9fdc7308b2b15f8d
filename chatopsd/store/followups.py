"""Follow-up actions of incidents in SQLite, with the ticket each became.

Export is decided before it is sent: `claim` marks a follow-up 'sending' durably, then the
ticket is created, then `ticket_created` stores its link. A crash between the two leaves it
'sending' (unconfirmed), which is never sent again on its own: a duplicate ticket is worse
than asking a person to look (see handlers/followups.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from chatopsd.store.db import Database


@dataclass(frozen=True, slots=True)
class FollowUp:
    incident_id: str
    n: int
    text: str
    owner: str | None
    added_by: str
    added_at: datetime
    done_at: datetime | None
    export_state: str | None  # None | sending | sent
    ticket_key: str | None
    ticket_url: str | None


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


class SqliteFollowUps:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._adding = asyncio.Lock()

    async def add(
        self, incident_id: str, text: str, owner: str | None, added_by: str, at: datetime
    ) -> int:
        """Store a follow-up; returns its number within the incident."""
        async with self._adding:  # one process, one writer: numbers cannot collide
            row = await self.db.fetchone(
                "SELECT COALESCE(MAX(n), 0) FROM incident_followups WHERE incident_id = ?",
                (incident_id,),
            )
            n = (int(row[0]) if row else 0) + 1
            await self.db.write(
                "INSERT INTO incident_followups (incident_id, n, text, owner, added_by, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (incident_id, n, text, owner, added_by, at.timestamp()),
            )
        return n

    async def list(self, incident_id: str) -> list[FollowUp]:
        rows = await self.db.fetchall(
            "SELECT * FROM incident_followups WHERE incident_id = ? ORDER BY n", (incident_id,)
        )
        return [_row(r) for r in rows]

    async def get(self, incident_id: str, n: int) -> FollowUp | None:
        row = await self.db.fetchone(
            "SELECT * FROM incident_followups WHERE incident_id = ? AND n = ?", (incident_id, n)
        )
        return None if row is None else _row(row)

    async def done(self, incident_id: str, n: int, at: datetime) -> None:
        await self.db.write(
            "UPDATE incident_followups SET done_at = ? WHERE incident_id = ? AND n = ?",
            (at.timestamp(), incident_id, n),
        )

    async def claim(self, incident_id: str, n: int) -> None:
        """Decide to send: durable before the ticket is created."""
        await self.db.write(
            "UPDATE incident_followups SET export_state = 'sending' "
            "WHERE incident_id = ? AND n = ? AND export_state IS NULL",
            (incident_id, n),
        )

    async def release(self, incident_id: str, n: int) -> None:
        """The tracker certainly did not create it (it answered with an error): may retry."""
        await self.db.write(
            "UPDATE incident_followups SET export_state = NULL "
            "WHERE incident_id = ? AND n = ? AND export_state = 'sending'",
            (incident_id, n),
        )

    async def ticket_created(self, incident_id: str, n: int, key: str, url: str) -> None:
        await self.db.write(
            "UPDATE incident_followups SET export_state = 'sent', ticket_key = ?, "
            "ticket_url = ? WHERE incident_id = ? AND n = ?",
            (key, url, incident_id, n),
        )
