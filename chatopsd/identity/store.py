"""`!pd link` claims and their confirmations (core/ports.IdentityLinks), in the database."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from chatopsd.core.identity import Link
from chatopsd.store.db import Database, Row

_COLUMNS = "platform, user_id, email, confirmed_by, request, expires"


class SqlIdentityLinks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(
        self, platform: str, user_id: str, email: str, request: str, expires: datetime
    ) -> None:
        await self.db.write(
            "INSERT INTO pd_links (platform, user_id, email, at, confirmed_by, request, expires) "
            "VALUES ($1, $2, $3, $4, NULL, $5, $6) ON CONFLICT (platform, user_id) DO UPDATE SET "
            "email = excluded.email, at = excluded.at, confirmed_by = NULL, "
            "request = excluded.request, expires = excluded.expires",
            (platform, user_id, email.lower(), time.time(), request, expires.timestamp()),
        )

    async def confirm(self, platform: str, user_id: str, email: str, by: str) -> bool:
        changed = await self.db.execute(
            "UPDATE pd_links SET confirmed_by = $1, request = NULL, expires = NULL "
            "WHERE platform = $2 AND user_id = $3 AND email = $4 AND confirmed_by IS NULL",
            (by, platform, user_id, email.lower()),
        )
        return changed > 0

    async def grant(self, platform: str, user_id: str, email: str, by: str) -> None:
        await self.db.write(
            "INSERT INTO pd_links (platform, user_id, email, at, confirmed_by) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (platform, user_id) DO UPDATE SET "
            "email = excluded.email, at = excluded.at, "
            "confirmed_by = excluded.confirmed_by, request = NULL, expires = NULL",
            (platform, user_id, email.lower(), time.time(), by),
        )

    async def link(self, platform: str, user_id: str) -> Link | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM pd_links WHERE platform = $1 AND user_id = $2",
            (platform, user_id),
        )
        return None if row is None else _link(row)

    async def by_request(self, request: str) -> Link | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM pd_links WHERE request = $1", (request,)
        )
        return None if row is None else _link(row)

    async def holders(self, email: str) -> list[Link]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM pd_links WHERE email = $1 ORDER BY platform, user_id",
            (email.lower(),),
        )
        return [_link(r) for r in rows]

    async def drop(self, platform: str, user_id: str) -> bool:
        changed = await self.db.execute(
            "DELETE FROM pd_links WHERE platform = $1 AND user_id = $2", (platform, user_id)
        )
        return changed > 0


def _link(row: Row) -> Link:
    expires = row[5]
    return Link(
        f"{row[0]}:{row[1]}",
        str(row[2]),
        confirmed_by=row[3],
        request=row[4],
        expires=datetime.fromtimestamp(float(expires), UTC) if expires is not None else None,
    )
