"""Picks the database: PostgreSQL when `chatopsd.database` is set, else SQLite at `state_db`."""

from __future__ import annotations

from pathlib import Path

from chatopsd.store.db import Database


async def open_database(url: str | None, path: Path) -> Database:
    if url:
        from chatopsd.store.postgres import PgDatabase  # asyncpg only when configured

        return await PgDatabase.open(url)
    from chatopsd.store.sqlite import SqliteDatabase

    return await SqliteDatabase.open(path)
