"""The PostgreSQL backend (asyncpg): several chatopsd instances share one database.

The store classes' SQL is the same as on SQLite (see store/db.py), written with asyncpg's own
`$n` placeholders, so it goes to the server as it is; each write runs on a pooled connection
(a group of statements in one transaction). Migrations run under a session advisory lock, so
two instances starting at once migrate exactly once: the second waits, then finds the schema
current.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from chatopsd.store.db import (
    MIGRATE_LOCK,
    Dialect,
    Op,
    Params,
    T,
    Tx,
    missing,
    refuse_inside_transaction,
    require_current,
    run_transaction,
)

log = logging.getLogger("chatopsd.store")

_COUNT = re.compile(r"(\d+)$")


def redact(url: str) -> str:
    """The URL without a password (`user:password@` or `?password=`), for logs, errors and
    `ctl health`. The config refuses both; this is for whatever else hands us a URL."""
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return "(a malformed PostgreSQL URL)"
    netloc = parts.netloc
    if password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if port:
            host += f":{port}"
        netloc = (f"{parts.username}@" if parts.username else "") + host
    query = "&".join(
        pair
        for pair in parts.query.split("&")
        if unquote(pair.partition("=")[0]).strip().lower() != "password"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def password_from_environment() -> str | None:
    """A systemd credential `chatopsd_database_password`, else $PGPASSWORD (asyncpg also
    reads ~/.pgpass itself). An empty credential file means "not given", as for tokens."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / "chatopsd_database_password"
        if path.is_file() and (password := path.read_text(encoding="utf-8").strip()):
            return password
    return os.environ.get("PGPASSWORD") or None


def connect_failure(exc: BaseException, timeout: float) -> str:
    """Why a connection could not be made, in words: a timeout's own text is empty."""
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within {timeout:g} s (connect timeout, "
            "chatopsd.database_connect_timeout_seconds): the server accepted the connection "
            "but did not answer, or the network drops packets"
        )
    return str(exc) or type(exc).__name__


def _password_hint(given: str | None) -> str:
    """Where the password of a refused login comes from, so the operator knows what to fix."""
    sources = (
        "the systemd credential chatopsd_database_password "
        "(/etc/chatopsd/credentials/chatopsd_database_password for the service), else "
        "PGPASSWORD, else ~/.pgpass"
    )
    if given is None:
        return f"no password was given; it comes from {sources}"
    return f"the password given was refused; it comes from {sources}"


def _count(status: str) -> int:
    """Rows changed, from a command tag such as "INSERT 0 1" or "UPDATE 3"."""
    m = _COUNT.search(status or "")
    return int(m.group(1)) if m else 0


async def _keep_session(conn: Any) -> None:
    """What the pool runs when a connection comes back: nothing beyond asyncpg's own
    clean-up (a transaction left open is rolled back). Its default reset costs a round trip
    per statement (advisory locks, cursors, LISTEN, settings), for state this store never
    leaves on a pooled connection: its advisory locks are transaction-scoped (the one session
    lock, the migration's, is released in a `finally`), it opens no cursor, listens to
    nothing and sets nothing for the session."""


class _Tx:
    dialect: Dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _count(await self._conn.execute(sql, *params))

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        return await self._conn.fetchrow(sql, *params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        return list(await self._conn.fetch(sql, *params))


class PgDatabase:
    dialect: Dialect = "postgresql"
    shared: bool = True  # other instances write too: ask the database, not memory

    def __init__(
        self, url: str, pool: Any, password: str | None, connect_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.pool = pool
        self._password = password
        self.connect_timeout = connect_timeout

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        password: str | None = None,
        min_size: int = 1,
        max_size: int = 5,
        read_only: bool = False,
        connect_timeout: float = 10.0,
    ) -> PgDatabase:
        """Connect (a small pool: the daemon's own concurrency is low) and migrate.

        `read_only` (`chatopsd audit`): no migration, and every transaction of the pool's
        sessions is read-only (`default_transaction_read_only`), so the server refuses writes.
        `sslmode` and the other libpq URL parameters are honoured by asyncpg itself.
        `connect_timeout` bounds each connection's set-up (TCP, TLS, start-up, password): a
        server that accepts and never answers fails after it, not after asyncpg's 60 s."""
        password = password if password is not None else password_from_environment()
        settings = {"application_name": "chatopsd"}
        if read_only:
            settings = {"application_name": "chatopsd-audit", "default_transaction_read_only": "on"}
        try:
            pool = await asyncpg.create_pool(
                url,
                password=password,
                min_size=min_size,
                max_size=max_size,
                command_timeout=30,
                timeout=connect_timeout,
                server_settings=settings,
                reset=_keep_session,
            )
        except asyncpg.InvalidPasswordError as exc:
            raise ConnectionError(
                f"PostgreSQL at {redact(url)}: {exc}: {_password_hint(password)}"
            ) from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConnectionError(
                f"PostgreSQL at {redact(url)}: {connect_failure(exc, connect_timeout)}"
            ) from None
        db = cls(url, pool, password, connect_timeout)
        try:
            if read_only:
                try:
                    rows = await pool.fetch("SELECT version FROM schema_version")
                except asyncpg.UndefinedTableError:
                    rows = []  # never migrated: said below as every missing migration is
                require_current([r[0] for r in rows], "postgresql", db.describe())
            else:
                await db.migrate()
        except BaseException:
            await pool.close()
            raise
        return db

    def describe(self) -> str:
        return redact(self.url)

    async def connect(self) -> Any:
        """A connection of its own, outside the pool (the lease holds its lock on one)."""
        return await asyncpg.connect(
            self.url,
            password=self._password,
            command_timeout=30,
            timeout=self.connect_timeout,
            # the server notices a vanished peer within seconds and frees its locks
            server_settings={
                "application_name": "chatopsd-lease",
                "tcp_keepalives_idle": "5",
                "tcp_keepalives_interval": "2",
                "tcp_keepalives_count": "3",
            },
        )

    async def migrate(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                applied = [r[0] for r in await conn.fetch("SELECT version FROM schema_version")]
                # every version not recorded, lower ones too (store/db.py: `missing`)
                for version, name, sql in missing(applied, "postgresql", self.describe()):
                    log.info("applying PostgreSQL migration %s", name)
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute("INSERT INTO schema_version VALUES ($1)", version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)

    async def write(self, sql: str, params: Params = ()) -> None:
        refuse_inside_transaction(self, "write")
        await self.pool.execute(sql, *params)

    async def write_many(self, ops: Iterable[Op]) -> None:
        refuse_inside_transaction(self, "write_many")
        batch = list(ops)
        if not batch:
            return
        if len(batch) == 1:
            await self.pool.execute(batch[0][0], *batch[0][1])
            return
        async with self.pool.acquire() as conn, conn.transaction():
            i = 0
            while i < len(batch):
                sql = batch[i][0]
                j = i + 1
                while j < len(batch) and batch[j][0] == sql:
                    j += 1
                if j - i == 1:
                    await conn.execute(sql, *batch[i][1])
                else:
                    await conn.executemany(sql, [p for _, p in batch[i:j]])
                i = j

    async def execute(self, sql: str, params: Params = ()) -> int:
        refuse_inside_transaction(self, "execute")
        return _count(await self.pool.execute(sql, *params))

    async def transaction(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` on one pooled connection inside a transaction. Inside `fn` every
        statement goes through its `tx`: a call on this database itself is refused
        (CallInsideTransaction), since it would run outside the transaction."""
        refuse_inside_transaction(self, "transaction")
        async with self.pool.acquire() as conn, conn.transaction():
            return await run_transaction(self, fn, _Tx(conn))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        refuse_inside_transaction(self, "fetchall")
        return list(await self.pool.fetch(sql, *params))

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        refuse_inside_transaction(self, "fetchone")
        return await self.pool.fetchrow(sql, *params)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), 5.0)
        except TimeoutError:
            self.pool.terminate()  # connections to an unreachable server: do not hang exit
