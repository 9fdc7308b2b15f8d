"""Small durable key/value state (connector cursors, last-seen post times)."""

from __future__ import annotations

import time

from chatopsd.core.ports import KeyValue
from chatopsd.store.db import Database


class SqlKeyValue:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM kv WHERE key = $1", (key,))
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str) -> None:
        await self.db.write(
            "INSERT INTO kv (key, value, updated) VALUES ($1, $2, $3) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            (key, value, time.time()),
        )


class ScopedKeyValue:
    """One instance's own keys in a shared database (a connector's session id and cursor
    belong to its connection: two instances sharing them would resume each other's)."""

    def __init__(self, kv: KeyValue, scope: str) -> None:
        self.kv, self.scope = kv, scope

    async def get(self, key: str) -> str | None:
        return await self.kv.get(f"{self.scope}/{key}")

    async def put(self, key: str, value: str) -> None:
        await self.kv.put(f"{self.scope}/{key}", value)
