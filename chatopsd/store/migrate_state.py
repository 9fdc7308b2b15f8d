"""`chatopsd migrate-state --from sqlite:PATH --to postgresql://…`: move a single-host install.

Both sides are first migrated to the newest schema of this release; then every table is
copied in one PostgreSQL transaction (parents before the tables that reference them), ids
kept (so the audit chain verifies the same), identity sequences moved past the copied ids,
and the row counts compared. The target must be empty: nothing is merged or overwritten.
The daemon must be stopped first (the SQLite file must not change during the copy): a
source still open in another process is refused.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from chatopsd.store.postgres import PgDatabase
from chatopsd.store.sqlite import SqliteDatabase

# Tables other tables point at come first; the rest follow in name order.
_PARENTS = ("incidents", "approvals")
# Per-instance or per-database bookkeeping: not copied.
_SKIP = {"schema_version", "lease", "instances"}
_CHUNK = 5000


class MigrateError(RuntimeError):
    pass


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def parse_source(text: str) -> Path:
    if not text.startswith("sqlite:"):
        raise MigrateError("--from must be sqlite:PATH (the state_db of the single-host install)")
    path = Path(text.removeprefix("sqlite:"))
    if not path.is_file():
        raise MigrateError(f"--from: no SQLite database at {path}")
    return path


def ensure_unused(path: Path) -> None:
    """Refuse while another process holds the SQLite file open: the single-host daemon,
    still writing. An exclusive lock in EXCLUSIVE locking mode cannot be had while any other
    connection has the WAL database open, idle or not, and the kernel drops the other
    process's locks when it dies (kill -9 included), so a crashed daemon does not block this."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise MigrateError(f"--from: {path}: {exc}") from None
        raise MigrateError(
            f"{path} is open in another process, most likely the single-host chatopsd "
            "still running: stop it first (systemctl stop chatopsd), then run migrate-state "
            "again; the copy must not miss what it writes meanwhile"
        ) from None
    finally:
        conn.close()


async def migrate_state(source: Path, target_url: str) -> list[Copied]:
    ensure_unused(source)
    lite = await SqliteDatabase.open(source)
    try:
        pg = await PgDatabase.open(target_url)
        try:
            return await _copy(lite, pg)
        finally:
            await pg.close()
    finally:
        await lite.close()


async def _copy(lite: SqliteDatabase, pg: PgDatabase) -> list[Copied]:
    names = [
        str(r[0])
        for r in await lite.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        if str(r[0]) not in _SKIP
    ]
    tables = [t for t in _PARENTS if t in names] + sorted(set(names) - set(_PARENTS))
    pg_tables = {
        str(r[0])
        for r in await pg.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    missing = [t for t in tables if t not in pg_tables]
    if missing:
        raise MigrateError(
            f"PostgreSQL has no table {', '.join(missing)}: its migration twin is missing "
            "(a migrations/postgresql/ folder, store/db.py)"
        )
    for table in tables:
        row = await pg.fetchone(f"SELECT 1 FROM {table} LIMIT 1")
        if row is not None:
            raise MigrateError(
                f"the target is not empty (table {table} has rows): migrate into a new database"
            )
    copied: list[Copied] = []
    async with pg.pool.acquire() as conn, conn.transaction():
        for table in tables:
            info = await lite.fetchall(f"PRAGMA table_info({table})")
            columns = [str(r[1]) for r in info]
            keys = [str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            order = ", ".join(keys) or "rowid"  # WITHOUT ROWID tables have a primary key
            types = {
                str(r[0]): str(r[1])
                for r in await conn.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = $1",
                    table,
                )
            }
            absent = [c for c in columns if c not in types]
            if absent:
                raise MigrateError(f"PostgreSQL table {table} lacks columns {', '.join(absent)}")
            floats = {c for c in columns if types[c] == "double precision"}
            col_list = ", ".join(columns)
            offset = total = 0
            while True:
                rows = await lite.fetchall(
                    f"SELECT {col_list} FROM {table} ORDER BY {order} LIMIT $1 OFFSET $2",
                    (_CHUNK, offset),
                )
                if not rows:
                    break
                records = [
                    tuple(
                        float(v) if c in floats and v is not None else v
                        for c, v in zip(columns, r, strict=True)
                    )
                    for r in rows
                ]
                await conn.copy_records_to_table(table, records=records, columns=columns)
                offset += len(rows)
                total += len(rows)
            if "id" in columns and types.get("id") == "bigint":
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"GREATEST((SELECT MAX(id) FROM {table}), 1))"
                )
            got = await conn.fetchval(f"SELECT COUNT(*) FROM {table}")
            if got != total:
                raise MigrateError(f"{table}: copied {total} rows but PostgreSQL has {got}")
            copied.append(Copied(table, total))
    return copied
