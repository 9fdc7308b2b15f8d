"""SQLite's write-ahead log is copied back into the database file off the command path:
a checkpointer thread does it every so many commits and when writes pause, never a commit
itself, and the log stays bounded however many commits come."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from chatopsd.store import sqlite as store_sqlite
from chatopsd.store.sqlite import SqliteDatabase


def _rows_in_the_file(path: Path) -> int:
    """The kv rows in the database file itself, without the WAL (`immutable=1` reads the file
    as it is): what a checkpoint has copied back."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchone() is None:
            return 0  # not even the migrations were copied back yet
        return int(conn.execute("SELECT count(*) FROM kv").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0  # read while a checkpoint was writing the file (immutable=1 assumes not)
    finally:
        conn.close()


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_writes_reach_the_database_file_once_the_writer_is_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sqlite, "_CHECKPOINT_IDLE_S", 0.05)
    path = tmp_path / "s.db"
    db = await SqliteDatabase.open(path)
    try:
        for i in range(10):
            await db.write("INSERT INTO kv VALUES ($1, $2, 0)", (f"k{i}", "v"))
        # A handful of commits is far below any page-count threshold: only the idle
        # checkpoint copies them into the file.
        for _ in range(100):
            if _rows_in_the_file(path) == 10:
                break
            await asyncio.sleep(0.02)
        assert _rows_in_the_file(path) == 10
        row = await db.fetchone("SELECT count(*) FROM kv")
        assert row is not None and row[0] == 10
    finally:
        await db.close()


async def test_writes_that_never_pause_are_checkpointed_every_so_many_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sqlite, "_CHECKPOINT_IDLE_S", 3600.0)  # never idle here
    every = store_sqlite._CHECKPOINT_EVERY
    path = tmp_path / "s.db"
    db = await SqliteDatabase.open(path)
    try:
        for i in range(2 * every + 10):
            await db.write("INSERT INTO kv VALUES ($1, $2, 0)", (f"k{i}", "v" * 100))
        # The checkpoint runs on its own thread: give it the time to finish.
        for _ in range(200):
            if _rows_in_the_file(path) >= every:
                break
            await asyncio.sleep(0.02)
        assert _rows_in_the_file(path) >= every
    finally:
        await db.close()
    assert _wal_bytes(path) == 0  # close checkpoints and truncates the log
    assert _rows_in_the_file(path) == 2 * every + 10


async def test_a_wal_past_its_limit_makes_the_writer_wait_for_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small limit and no periodic checkpoint: only the pause keeps the log in bounds.
    monkeypatch.setattr(store_sqlite, "_WAL_LIMIT", 256 * 1024)
    monkeypatch.setattr(store_sqlite, "_CHECKPOINT_EVERY", 10**9)
    monkeypatch.setattr(store_sqlite, "_CHECKPOINT_IDLE_S", 3600.0)
    path = tmp_path / "s.db"
    db = await SqliteDatabase.open(path)
    try:
        largest = 0
        for i in range(1000):
            await db.write("INSERT INTO kv VALUES ($1, $2, 0)", (f"k{i}", "v" * 100))
            largest = max(largest, _wal_bytes(path))
        assert db.paused >= 1
        # the limit, plus what commits between two looks at the size may add
        assert largest < 256 * 1024 + 2 * store_sqlite._WAL_CHECK_EVERY * 8192
    finally:
        await db.close()


async def test_the_writer_waits_only_when_the_wal_has_grown_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The WAL file does not shrink by itself when the log starts over: cut back at each
    # restart, its size says how far the log grew since, and the writer waits only then
    # (not at every look once the file was once past the limit).
    monkeypatch.setattr(store_sqlite, "_WAL_LIMIT", 256 * 1024)
    monkeypatch.setattr(store_sqlite, "_WAL_CHECK_EVERY", 1)
    monkeypatch.setattr(store_sqlite, "_CHECKPOINT_EVERY", 10**9)
    monkeypatch.setattr(store_sqlite, "_CHECKPOINT_IDLE_S", 3600.0)
    db = await SqliteDatabase.open(tmp_path / "s.db")
    try:
        for i in range(600):
            await db.write("INSERT INTO kv VALUES ($1, $2, 0)", (f"k{i}", "v" * 100))
        # each commit adds a page or two (4 KiB each): past 256 KiB every few dozen commits
        assert 1 <= db.paused <= 600 // 20, db.paused
    finally:
        await db.close()


async def test_a_read_begun_after_a_commit_sees_it_while_other_reads_run(tmp_path: Path) -> None:
    # Reads share one connection on the reader's thread. Were their steps to interleave (one
    # read executed, another executed before the first was fetched), the second would join the
    # first's read transaction and miss a write committed in between: a card read as still
    # owed after it was posted was posted twice.
    db = await SqliteDatabase.open(tmp_path / "s.db")
    try:
        await db.write_many(
            [
                ("INSERT INTO kv (key, value, updated) VALUES ($1, $2, 0)", (f"k{i}", "0"))
                for i in range(200)
            ]
        )
        missed = 0
        for i in range(1, 200):
            background = [
                asyncio.ensure_future(db.fetchall("SELECT key, value FROM kv")) for _ in range(3)
            ]
            await db.write("UPDATE kv SET value = $1 WHERE key = 'k0'", (str(i),))
            row = await db.fetchone("SELECT value FROM kv WHERE key = 'k0'")
            missed += row is None or row[0] != str(i)
            await asyncio.gather(*background)
        assert missed == 0
    finally:
        await db.close()
