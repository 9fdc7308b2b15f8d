"""Picks the database: PostgreSQL when `chatopsd.database` is set, else SQLite at `state_db`."""

from __future__ import annotations

from pathlib import Path

from chatopsd.store.db import Database


async def open_database(url: str | None, path: Path, *, connect_timeout: float = 10.0) -> Database:
    if url:
        from chatopsd.store.postgres import PgDatabase  # asyncpg only when configured

        return await PgDatabase.open(url, connect_timeout=connect_timeout)
    from chatopsd.store.sqlite import SqliteDatabase

    return await SqliteDatabase.open(path)


async def open_readonly(url: str | None, path: Path, *, connect_timeout: float = 10.0) -> Database:
    """The same database for reading only (`chatopsd audit`): no migration, no write probe,
    and the database itself refuses writes (SQLite `mode=ro`; PostgreSQL sessions whose
    transactions are read-only), so reading while the daemon runs changes nothing."""
    if url:
        from chatopsd.store.postgres import PgDatabase

        return await PgDatabase.open(url, read_only=True, connect_timeout=connect_timeout)
    from chatopsd.store.sqlite import SqliteReader

    return await SqliteReader.open(path)
