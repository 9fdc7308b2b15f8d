"""The SQLite database: WAL, one writer with group commit, a reader, numbered migrations.

Why one writer: SQLite allows one writer at a time, and a connection shared by tasks is ONE
transaction (a commit in one task would commit another's half-done work). So every write
goes through a queue; the writer takes whatever is queued, runs it in one `BEGIN IMMEDIATE`
transaction (consecutive identical statements as one executemany), commits, then wakes the
waiters. A write is durable against kill -9 once `write` returns (WAL with
synchronous=NORMAL loses nothing on a process crash, only on power loss).

Why the writer runs on the event loop's own thread: a WAL commit without fsync costs tens of
microseconds, less than handing the statement to another thread and waiting for it to be
scheduled (on a busy machine that thread is scheduled late, and every command waits on two
commits: its claim and its audit row). So the writes run synchronously, one group commit per
turn of the writer, and the loop is never held longer than one group takes.

What could hold the loop for long is taken off it: the WAL checkpoint (copying the log back
into the database file) never runs inside a commit (`wal_autocheckpoint=0` on the writer);
a checkpointer thread with its own connection runs it every `_CHECKPOINT_EVERY` commits and
when the writer falls idle. Should the log still grow past `_WAL_LIMIT` (writes that never
pause, so a passive checkpoint never catches up), the writer pauses, for at most
`_WAL_PAUSE` seconds, while the checkpoint finishes, so the next commit starts the log over.
Reads (`fetchall`, `fetchone`) run on a reader connection in a thread of its own: a large
read must not hold the loop. Each read runs whole on that thread (execute, fetch, reset) before
the next starts: two reads whose steps interleaved on one connection would share one read
transaction, and the second would not see a write committed after the first began.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
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
# A passive checkpoint every this many commits (about SQLite's own 1,000-page default, for
# rows the size of a claim or an audit row), and once the writer has been idle this long.
_CHECKPOINT_EVERY = 1000
_CHECKPOINT_IDLE_S = 1.0
# The WAL file size past which the writer waits (at most _WAL_PAUSE) for a checkpoint to finish.
_WAL_LIMIT = 16 * 1024 * 1024
_WAL_PAUSE = 0.5
_WAL_CHECK_EVERY = 64  # commits between two looks at the WAL file's size


@dataclass(slots=True)
class _Work:
    """A queued unit: statements for the group commit, or a function needing a transaction
    (or a row count) of its own."""

    ops: list[Op]
    fut: asyncio.Future[Any]
    fn: Callable[[Tx], Awaitable[Any]] | None = None


class _Tx:
    """The writer connection inside `BEGIN IMMEDIATE` (see SqliteDatabase.transaction). The
    statements run at once, on the loop's thread: no other write can come between them,
    since the writer runs one unit at a time."""

    dialect: Dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> int:
        cur = self._db.execute(sqlite_sql(sql), params)
        try:
            return cur.rowcount
        finally:
            cur.close()

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        cur = self._db.execute(sqlite_sql(sql), params)
        try:
            row: sqlite3.Row | None = cur.fetchone()
            return row
        finally:
            cur.close()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        cur = self._db.execute(sqlite_sql(sql), params)
        try:
            return list(cur.fetchall())
        finally:
            cur.close()


class _ReaderTx:
    """A read-only connection's statements, on its thread (SqliteReader.transaction)."""

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


class _Checkpointer:
    """WAL checkpoints on a thread of their own, with a connection of their own, so that no
    command waits for one. One runs at a time; asking while one runs is a no-op."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self._pool = concurrent.futures.ThreadPoolExecutor(1, "sqlite-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self.running: asyncio.Future[None] | None = None
        self.runs = 0

    def start(self) -> asyncio.Future[None]:
        """A passive checkpoint (it never waits for or blocks the writer), unless one runs."""
        if self.running is None or self.running.done():
            loop = asyncio.get_running_loop()
            self.running = loop.run_in_executor(self._pool, self._checkpoint)
            self.running.add_done_callback(_log_checkpoint_failure)
        return self.running

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.runs += 1

    def wal_size(self) -> int:
        try:
            return os.stat(self.wal).st_size
        except OSError:
            return 0

    async def close(self) -> None:
        if self.running is not None:
            with contextlib.suppress(Exception):  # logged by _log_checkpoint_failure
                await self.running
        self._pool.submit(self._close).result()
        self._pool.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Reader:
    """The reader connection and its thread: one read at a time, each run to its end there."""

    def __init__(self, conn: sqlite3.Connection, pool: concurrent.futures.ThreadPoolExecutor):
        self._conn, self._pool = conn, pool

    @classmethod
    async def open(cls, path: Path) -> _Reader:
        pool = concurrent.futures.ThreadPoolExecutor(1, "sqlite-reader")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(pool, _connect_reader, path)
        except BaseException:
            pool.shutdown(wait=True)
            raise
        return cls(conn, pool)

    async def fetchall(self, sql: str, params: Params) -> list[sqlite3.Row]:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._fetchall, sql, params
        )

    async def fetchone(self, sql: str, params: Params) -> sqlite3.Row | None:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._fetchone, sql, params
        )

    def _fetchall(self, sql: str, params: Params) -> list[sqlite3.Row]:
        cur = self._conn.execute(sql, params)
        try:
            return cur.fetchall()
        finally:
            cur.close()

    def _fetchone(self, sql: str, params: Params) -> sqlite3.Row | None:
        cur = self._conn.execute(sql, params)
        try:
            row: sqlite3.Row | None = cur.fetchone()
            return row
        finally:
            cur.close()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._conn.close)
        self._pool.shutdown(wait=True)


def _log_checkpoint_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("WAL checkpoint failed: %s", fut.exception())


class SqliteDatabase:
    dialect: Dialect = "sqlite"
    shared: bool = False  # one process owns the file: what it keeps in memory is the truth

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: _Reader):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._checkpointer = _Checkpointer(path)
        self._commits = 0  # since the last checkpoint began
        self.commits = 0  # group commits made (a figure for the benches)
        self.paused = 0  # times the writer waited for a checkpoint (the WAL past _WAL_LIMIT)
        self._idle: asyncio.TimerHandle | None = None
        self._last_commit = 0.0  # loop time
        self._queue: asyncio.Queue[_Work | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="db-writer")
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> SqliteDatabase:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = _connect_writer(path)
        try:
            _migrate(writer, path)
            _check_writable(writer)
            reader = await _Reader.open(path)
        except BaseException:
            writer.close()
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
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                result = await run_transaction(self, fn, tx)
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            return result

        self._queue.put_nowait(_Work([], fut, wrapped))
        return await fut

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        refuse_inside_transaction(self, "fetchall")
        return await self._reader.fetchall(sqlite_sql(sql), params)

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        refuse_inside_transaction(self, "fetchone")
        return await self._reader.fetchone(sqlite_sql(sql), params)

    async def close(self) -> None:
        """Finish queued writes, checkpoint, close the connections (an open one hangs exit)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._task
        if self._idle is not None:
            self._idle.cancel()
        await self._checkpointer.close()
        try:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            log.warning("WAL checkpoint at close failed", exc_info=True)
        await self._reader.close()
        self._writer.close()

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
                    self._commit(group)
                    group = []
                await self._run(work)
            if group:
                self._commit(group)
            if batch:
                await self._after_commits(len(batch))

    async def _after_commits(self, units: int) -> None:
        """Keep the WAL short without a command waiting for it: a checkpoint on the other
        thread every _CHECKPOINT_EVERY commits and when writes pause; a bounded wait for one
        when the WAL has grown past _WAL_LIMIT anyway."""
        before = self.commits
        self.commits += units
        self._commits += units
        self._last_commit = asyncio.get_running_loop().time()
        if self._commits >= _CHECKPOINT_EVERY:
            self._checkpoint()
        elif self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(
                _CHECKPOINT_IDLE_S, self._idle_checkpoint
            )
        looked = before // _WAL_CHECK_EVERY != self.commits // _WAL_CHECK_EVERY
        if looked and self._checkpointer.wal_size() > _WAL_LIMIT:
            self.paused += 1
            running = self._checkpoint()
            # the writes go on after the pause; the checkpoint finishes on its thread
            with contextlib.suppress(TimeoutError, sqlite3.Error):
                await asyncio.wait_for(asyncio.shield(running), _WAL_PAUSE)

    def _checkpoint(self) -> asyncio.Future[None]:
        self._commits = 0
        return self._checkpointer.start()

    def _idle_checkpoint(self) -> None:
        """A checkpoint once no commit came for _CHECKPOINT_IDLE_S (else look again then)."""
        self._idle = None
        if self._closed or not self._commits:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last_commit
        if quiet >= _CHECKPOINT_IDLE_S and self._queue.empty():
            self._checkpoint()
        else:
            self._idle = loop.call_later(
                max(_CHECKPOINT_IDLE_S - quiet, 0.01), self._idle_checkpoint
            )

    async def _run(self, work: _Work) -> None:
        assert work.fn is not None
        try:
            result = await work.fn(_Tx(self._writer))
        except Exception as exc:
            _settle(work.fut, exc)
        else:
            if not work.fut.done():
                work.fut.set_result(result)

    def _commit(self, batch: list[_Work]) -> None:
        try:
            self._transaction(
                [op for w in batch for op in w.ops] if len(batch) > 1 else batch[0].ops
            )
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].fut, exc)
                return
            # One bad group must not fail its neighbours: retry each group on its own.
            for w in batch:
                try:
                    self._transaction(w.ops)
                except Exception as one:
                    _settle(w.fut, one)
                else:
                    _settle(w.fut, None)
            return
        for w in batch:
            _settle(w.fut, None)

    def _transaction(self, ops: list[Op]) -> None:
        db = self._writer
        if not ops:
            return
        if len(ops) == 1:
            # One statement is atomic on its own in autocommit mode.
            db.execute(*ops[0]).close()
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(ops):
                sql = ops[i][0]
                j = i + 1
                while j < len(ops) and ops[j][0] == sql:
                    j += 1
                if j - i == 1:
                    db.execute(sql, ops[i][1]).close()
                else:
                    db.executemany(sql, [p for _, p in ops[i:j]]).close()
                i = j
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
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
        return await run_transaction(self, fn, _ReaderTx(self._conn))

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


_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON")


def _connect_reader(path: Path) -> sqlite3.Connection:
    """The reader, opened on (and used only by) _Reader's thread."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    try:
        for pragma in _PRAGMAS:
            db.execute(f"PRAGMA {pragma}").close()
    except BaseException:
        db.close()
        raise
    return db


def _connect_writer(path: Path) -> sqlite3.Connection:
    """The writer, used on the loop's thread. It never checkpoints inside a commit
    (`wal_autocheckpoint=0`): the checkpointer thread does. (_WAL_LIMIT is read when the
    database opens.)"""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    try:
        # journal_size_limit: when the log starts over, a file grown past _WAL_LIMIT is cut
        # back to it, so a file past it again says the log itself grew past it since (the
        # writer looks at the size). The cut is only that excess: a log that starts over
        # reuses its file, without the file system freeing and allocating its blocks anew.
        limit = f"journal_size_limit={_WAL_LIMIT}"
        for pragma in (*_PRAGMAS, "wal_autocheckpoint=0", limit):
            db.execute(f"PRAGMA {pragma}").close()
        # A corrupt or foreign file fails here, at start-up, not at the first command.
        db.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Apply every migration this database lacks (store/db.py: `missing`), all in ONE
    `BEGIN IMMEDIATE` transaction: a second process starting at the same moment waits on the
    lock, then finds nothing to do."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    db.execute("BEGIN IMMEDIATE")
    try:
        applied = [row[0] for row in db.execute("SELECT version FROM schema_version")]
        for version, name, sql in missing(applied, "sqlite", str(path)):
            log.info("applying migration %s", name)
            for statement in _statements(sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?1)", (version,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _check_writable(db: sqlite3.Connection) -> None:
    """Fail at start-up, not at the first command, when the file cannot be written (a
    read-only file or mount opens fine and reads fine). The probe row is rolled back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("INSERT INTO schema_version VALUES (-1)")
    finally:
        db.execute("ROLLBACK")


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
