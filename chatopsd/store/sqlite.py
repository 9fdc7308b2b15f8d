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
import sqlite3
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger("chatopsd.store")

Params = Sequence[Any]
Op = tuple[str, Params]
_MAX_BATCH = 512


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in store/migrations, in order."""
    found = []
    for entry in resources.files("chatopsd.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


class Database:
    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._queue: asyncio.Queue[tuple[list[Op], asyncio.Future[None]] | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="db-writer")
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            await _migrate(writer)
            await _check_writable(writer)
            reader = await _connect(path)
        except BaseException:
            # an open connection is a thread that keeps the process from exiting
            await writer.close()
            raise
        return cls(path, writer, reader)

    async def write(self, sql: str, params: Params = ()) -> None:
        """Run one statement in the next group commit; returns once it is durable."""
        await self.write_many([(sql, params)])

    async def write_many(self, ops: Iterable[Op]) -> None:
        """Run statements atomically (all or none) in the next group commit."""
        if self._closed:
            raise RuntimeError("database is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((list(ops), fut))
        await fut

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        async with self._reader.execute(sql, params) as cur:
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
            batch: list[tuple[list[Op], asyncio.Future[None]]] = []
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
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[list[Op], asyncio.Future[None]]]) -> None:
        try:
            await self._transaction([op for ops, _ in batch for op in ops])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            # One bad group must not fail its neighbours: retry each group on its own.
            for ops, fut in batch:
                try:
                    await self._transaction(ops)
                except Exception as one:
                    _settle(fut, one)
                else:
                    _settle(fut, None)
            return
        for _, fut in batch:
            _settle(fut, None)

    async def _transaction(self, ops: list[Op]) -> None:
        db = self._writer
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


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
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


async def _migrate(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
        row = await cur.fetchone()
    current = (row[0] if row else None) or 0
    for version, name, sql in migrations():
        if version <= current:
            continue
        log.info("applying migration %s", name)
        # executescript commits first, so the BEGIN/COMMIT inside makes the step atomic.
        await db.executescript(
            f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_version VALUES ({version});\nCOMMIT;"
        )


async def _check_writable(db: aiosqlite.Connection) -> None:
    """Fail at start-up, not at the first command, when the file cannot be written (a
    read-only file or mount opens fine and reads fine). The probe row is rolled back."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute("INSERT INTO schema_version VALUES (-1)")
    finally:
        await db.execute("ROLLBACK")
