"""`!pd link`: chat identities linked to PagerDuty emails, in SQLite."""

from __future__ import annotations

import time

from chatopsd.store.db import Database


class SqliteIdentityLinks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def link(self, platform: str, user_id: str, email: str) -> None:
        await self.db.write(
            "INSERT INTO pd_links (platform, user_id, email, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (platform, user_id) "
            "DO UPDATE SET email = excluded.email, at = excluded.at",
            (platform, user_id, email.lower(), time.time()),
        )

    async def email(self, platform: str, user_id: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT email FROM pd_links WHERE platform = ? AND user_id = ?", (platform, user_id)
        )
        return None if row is None else str(row[0])

    async def holders(self, email: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT platform, user_id FROM pd_links WHERE email = ?", (email.lower(),)
        )
        return [f"{r[0]}:{r[1]}" for r in rows]
