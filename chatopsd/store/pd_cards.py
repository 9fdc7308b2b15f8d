"""PagerDuty incidents followed in chat, and the cards that show them, in SQLite.

The poll decides first (one atomic write: the new state and which cards are owed), then posts
and edits what is owed. A restart between the two finds the owed cards and delivers them once;
a repeated poll finds nothing changed and owes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from chatopsd.core.messages import Destination
from chatopsd.core.ports import OwedCard
from chatopsd.store.db import Database, Op


class SqliteIncidentCards:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def state(self, incident_id: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT state FROM pd_incidents WHERE incident_id = ?", (incident_id,)
        )
        return None if row is None else str(row[0])

    async def states(self, incident_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ids = list(incident_ids)
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit is far above this
            chunk = ids[i : i + 500]
            rows = await self.db.fetchall(
                "SELECT incident_id, state FROM pd_incidents "
                f"WHERE incident_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            found.update((str(r[0]), str(r[1])) for r in rows)
        return found

    async def by_number(self, number: int) -> str | None:
        row = await self.db.fetchone(
            "SELECT incident_id FROM pd_incidents WHERE number = ? ORDER BY updated DESC",
            (number,),
        )
        return None if row is None else str(row[0])

    async def unresolved(self) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT incident_id FROM pd_incidents WHERE status <> 'resolved'"
        )
        return [str(r[0]) for r in rows]

    async def decide(
        self, changes: Sequence[tuple[str, int, str, str]], destinations: Sequence[Destination]
    ) -> None:
        now = time.time()
        ops: list[Op] = []
        for incident_id, number, status, state in changes:
            ops.append(
                (
                    "INSERT INTO pd_incidents (incident_id, number, status, state, updated) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (incident_id) DO UPDATE SET "
                    "status = excluded.status, state = excluded.state, updated = excluded.updated",
                    (incident_id, number, status, state, now),
                )
            )
            # An incident first seen already resolved gets no card (nobody needs to act).
            if status != "resolved":
                for d in destinations:
                    ops.append(
                        (
                            "INSERT INTO pd_cards (incident_id, platform, channel, wanted) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            (incident_id, d.platform, d.channel, state),
                        )
                    )
            ops.append(
                ("UPDATE pd_cards SET wanted = ? WHERE incident_id = ?", (state, incident_id))
            )
        if ops:
            await self.db.write_many(ops)

    async def owed(self, incident_id: str | None = None) -> list[OwedCard]:
        one = "" if incident_id is None else "AND incident_id = ? "
        rows = await self.db.fetchall(
            "SELECT incident_id, platform, channel, message_id, wanted FROM pd_cards "
            f"WHERE (shown IS NULL OR shown <> wanted) {one}ORDER BY incident_id",
            () if incident_id is None else (incident_id,),
        )
        return [
            OwedCard(str(r[0]), Destination(str(r[1]), str(r[2])), r[3], str(r[4])) for r in rows
        ]

    async def shown(self, card: OwedCard, message_id: str) -> None:
        d = card.destination
        await self.db.write(
            "UPDATE pd_cards SET message_id = ?, shown = ? "
            "WHERE incident_id = ? AND platform = ? AND channel = ?",
            (message_id, card.wanted, card.incident_id, d.platform, d.channel),
        )
