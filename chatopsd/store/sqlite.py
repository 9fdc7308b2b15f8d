"""The SQLite database: WAL, one writer with group commit, a reader, numbered migrations.

Why one writer: SQLite allows one writer at a time, and an aiosqlite connection shared by
tasks is ONE transaction (a commit in one task would commit another's half-done work). So
every write goes through a queue; the writer takes whatever is queued, runs it in one
`BEGIN IMMEDIATE` transaction (consecutive identical statements as one executemany), commits,
then wakes the waiters. A write is durable against kill -9 once `write` returns (WAL with
synchronous=NORMAL loses nothing on a process crash, only on power loss).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from chatopsd.store.db import (
    Dialect,
    Op,
    Params,
    T,
    Tx,
    migrations,
    missing,
    refuse_inside_transaction,
    require_current,
    run_transaction,
    sqlite_sql,
)

log = logging.getLogger("chatopsd.store")

__all__ = ["Op", "Params", "SqliteDatabase", "SqliteReader", "migrations"]
_MAX_BATCH = 512


@dataclass(slots=True)
class _Work:
    """A queued unit: statements for the group commit, or a function needing a transaction
    (or a row count) of its own."""

    ops: list[Op]
    fut: asyncio.Future[Any]
    fn: Callable[[Tx], Awaitable[Any]] | None = None


class _Tx:
    """The writer connection inside `BEGIN IMMEDIATE` (see SqliteDatabase.transaction)."""

    dialect: Dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._db.execute(sqlite_sql(sql), params) as cur:
            return cur.rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        async with self._db.execute(sqlite_sql(sql), params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._db.execute(sqlite_sql(sql), params) as cur:
            return list(await cur.fetchall())


class SqliteDatabase:
    dialect: Dialect = "sqlite"
    shared: bool = False  # one process owns the file: what it keeps in memory is the truth

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._queue: asyncio.Queue[_Work | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="db-writer")
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> SqliteDatabase:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            await _migrate(writer, path)
            await _check_writable(writer)
            reader = await _connect(path)
        except BaseException:
            await writer.close()  # an open connection hangs interpreter exit
            raise
        return cls(path, writer, reader)

    async def write(self, sql: str, params: Params = ()) -> None:
        """Run one statement in the next group commit; returns once it is durable."""
        refuse_inside_transaction(self, "write")
        await self._queue_ops([(sqlite_sql(sql), params)])

    async def write_many(self, ops: Iterable[Op]) -> None:
        """Run statements atomically (all or none) in the next group commit."""
        refuse_inside_transaction(self, "write_many")
        await self._queue_ops([(sqlite_sql(sql), params) for sql, params in ops])

    async def _queue_ops(self, ops: list[Op]) -> None:
        if self._closed:
            raise RuntimeError("database is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Work(ops, fut))
        await fut

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement on its own (in queue order); returns the rows it changed."""
        refuse_inside_transaction(self, "execute")

        async def run(tx: Tx) -> int:
            return await tx.execute(sql, params)

        return await self._submit(run, begin=False)

    async def transaction(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` on the writer inside BEGIN IMMEDIATE, between two group commits.
        Inside `fn` every statement goes through its `tx`: a call on this database itself
        is refused (CallInsideTransaction), since the writer it would wait for is running
        `fn`."""
        refuse_inside_transaction(self, "transaction")
        return await self._submit(fn, begin=True)

    async def _submit(self, fn: Callable[[Tx], Awaitable[T]], *, begin: bool) -> T:
        if self._closed:
            raise RuntimeError("database is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def wrapped(tx: Tx) -> T:
            if not begin:
                return await fn(tx)
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                result = await run_transaction(self, fn, tx)
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            return result

        self._queue.put_nowait(_Work([], fut, wrapped))
        return await fut

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        refuse_inside_transaction(self, "fetchall")
        async with self._reader.execute(sqlite_sql(sql), params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        refuse_inside_transaction(self, "fetchone")
        async with self._reader.execute(sqlite_sql(sql), params) as cur:
            return await cur.fetchone()

    async def close(self) -> None:
        """Finish queued writes, checkpoint, close both connections (an open one hangs exit)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._task
        try:
            await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            log.warning("WAL checkpoint at close failed", exc_info=True)
        await self._reader.close()
        await self._writer.close()

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            item = await self._queue.get()
            batch: list[_Work] = []
            if item is None:
                stop = True
            else:
                batch.append(item)
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                else:
                    batch.append(nxt)
            # Statements group-commit; a function runs alone, in queue order between groups.
            group: list[_Work] = []
            for work in batch:
                if work.fn is None:
                    group.append(work)
                    continue
                if group:
                    await self._commit(group)
                    group = []
                await self._run(work)
            if group:
                await self._commit(group)

    async def _run(self, work: _Work) -> None:
        assert work.fn is not None
        try:
            result = await work.fn(_Tx(self._writer))
        except Exception as exc:
            _settle(work.fut, exc)
        else:
            if not work.fut.done():
                work.fut.set_result(result)

    async def _commit(self, batch: list[_Work]) -> None:
        try:
            await self._transaction([op for w in batch for op in w.ops])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].fut, exc)
                return
            # One bad group must not fail its neighbours: retry each group on its own.
            for w in batch:
                try:
                    await self._transaction(w.ops)
                except Exception as one:
                    _settle(w.fut, one)
                else:
                    _settle(w.fut, None)
            return
        for w in batch:
            _settle(w.fut, None)

    async def _transaction(self, ops: list[Op]) -> None:
        db = self._writer
        if not ops:
            return
        if len(ops) == 1:
            # One statement is atomic on its own in autocommit mode: one thread hop, not three.
            # (This is the common case when load is light, so it sets the per-command latency.)
            await db.execute(*ops[0])
            return
        await db.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(ops):
                sql = ops[i][0]
                j = i + 1
                while j < len(ops) and ops[j][0] == sql:
                    j += 1
                if j - i == 1:
                    await db.execute(sql, ops[i][1])
                else:
                    await db.executemany(sql, [p for _, p in ops[i:j]])
                i = j
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise


class SqliteReader:
    """The database opened read-only (URI `mode=ro`) on one connection: `chatopsd audit`
    reads through it, while the daemon may hold the file. No migration runs and nothing is
    written: SQLite itself refuses any write on this connection ("attempt to write a
    readonly database"), which is what the write methods below run into."""

    dialect: Dialect = "sqlite"
    shared: bool = False

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    async def open(cls, path: Path | str) -> SqliteReader:
        path, uri = _read_only_uri(Path(path))
        conn = await _open_connection(uri, uri=True)
        conn.row_factory = sqlite3.Row
        try:
            await conn.execute("PRAGMA busy_timeout=5000")  # the daemon may be checkpointing
            async with conn.execute("SELECT version FROM schema_version") as cur:
                applied = [row[0] for row in await cur.fetchall()]
            require_current(applied, "sqlite", str(path))
        except BaseException:
            await conn.close()  # an open connection hangs interpreter exit
            raise
        return cls(path, conn)

    def describe(self) -> str:
        return f"sqlite:{self.path} (read-only)"

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        refuse_inside_transaction(self, "fetchall")
        async with self._conn.execute(sqlite_sql(sql), params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        refuse_inside_transaction(self, "fetchone")
        async with self._conn.execute(sqlite_sql(sql), params) as cur:
            return await cur.fetchone()

    async def write(self, sql: str, params: Params = ()) -> None:
        refuse_inside_transaction(self, "write")
        await self._execute(sql, params)

    async def write_many(self, ops: Iterable[Op]) -> None:
        refuse_inside_transaction(self, "write_many")
        for sql, params in ops:
            await self._execute(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        refuse_inside_transaction(self, "execute")
        return await self._execute(sql, params)

    async def _execute(self, sql: str, params: Params) -> int:
        async with self._conn.execute(sqlite_sql(sql), params) as cur:
            return cur.rowcount

    async def transaction(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        refuse_inside_transaction(self, "transaction")
        return await run_transaction(self, fn, _Tx(self._conn))

    async def close(self) -> None:
        await self._conn.close()


def _read_only_uri(path: Path) -> tuple[Path, str]:
    """The absolute path and its `file:` URI with `mode=ro` (as_uri quotes `?`, `#`, `%`).

    Without a `-wal` file no process has the database open (the last one to close deletes
    it after a full checkpoint), so the file alone is the whole database: it is read with
    `immutable=1`, which creates no `-wal`/`-shm`. A plain read-only open would create both,
    owned by whoever ran `chatopsd audit` (root, under sudo), and the service's own user
    could then not open its database. (A daemon starting meanwhile writes to a new WAL; the
    file itself changes only at a checkpoint.)"""
    path = Path(os.path.abspath(path))
    quiet = "" if path.with_name(path.name + "-wal").exists() else "&immutable=1"
    return path, f"{path.as_uri()}?mode=ro{quiet}"


def _settle(fut: asyncio.Future[Any], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


async def _open_connection(target: Path | str, *, uri: bool = False) -> aiosqlite.Connection:
    """aiosqlite.connect, except that a connection that fails to open leaves no thread behind.

    On a failed open aiosqlite queues the stop of its worker thread without waiting for it;
    the thread then reports to the event loop, which may be closed by then (start-up failed
    and the process is exiting, sooner on a busy machine): "RuntimeError: Event loop is
    closed" and a traceback from the thread, after the one clean line. So the thread is
    waited for before the error goes on."""
    pending = aiosqlite.connect(target, isolation_level=None, uri=uri)
    try:
        return await pending
    except BaseException:
        thread = (
            pending if isinstance(pending, threading.Thread) else getattr(pending, "_thread", None)
        )
        if isinstance(thread, threading.Thread) and thread.is_alive():
            await asyncio.to_thread(thread.join, 5.0)
        raise


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await _open_connection(path)
    db.row_factory = sqlite3.Row
    try:
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=5000",
            "foreign_keys=ON",
        ):
            await db.execute(f"PRAGMA {pragma}")
        # A corrupt or foreign file fails here, at start-up, not at the first command.
        async with db.execute("SELECT count(*) FROM sqlite_master") as cur:
            await cur.fetchall()  # closed at once: an open read would pin a stale snapshot
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Apply every migration this database lacks (store/db.py: `missing`), all in ONE
    `BEGIN IMMEDIATE` transaction: a second process starting at the same moment waits on the
    lock, then finds nothing to do."""
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    await db.execute("BEGIN IMMEDIATE")
    try:
        async with db.execute("SELECT version FROM schema_version") as cur:
            applied = [row[0] for row in await cur.fetchall()]
        for version, name, sql in missing(applied, "sqlite", str(path)):
            log.info("applying migration %s", name)
            for statement in _statements(sql):
                await db.execute(statement)
            await db.execute("INSERT INTO schema_version VALUES ($1)", (version,))
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


async def _check_writable(db: aiosqlite.Connection) -> None:
    """Fail at start-up, not at the first command, when the file cannot be written (a
    read-only file or mount opens fine and reads fine). The probe row is rolled back."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute("INSERT INTO schema_version VALUES (-1)")
    finally:
        await db.execute("ROLLBACK")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (a trigger's BEGIN … END stays whole)."""
    found: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                found.append(pending)
            pending = ""
    if pending.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in pending.splitlines()
    ):
        raise RuntimeError(f"unterminated statement in a migration: {pending[:80]!r}")
    return found
