"""`chatopsd audit` opens the service's database read-only: it neither migrates nor writes
it, the database itself refuses a write through its connection, and it reads while the
daemon holds the database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chatopsd.app import App
from chatopsd.core.messages import Actor, Inbound
from chatopsd.core.ports import AuditEntry
from chatopsd.store import sqlite as store_sqlite
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.backend import open_readonly
from chatopsd.store.db import Database
from tests.pg_cluster import BACKENDS, open_backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_backend(request, tmp_path) as database:
        yield database


def files(db_path: Path) -> dict[str, tuple[int, int, str]]:
    """Size, mtime and content hash of the database file and its WAL and shared-memory
    index, when they exist (a reader must not create them either: run as root, they would
    lock the service's user out of its own database)."""
    found = {}
    for path in (db_path, *(db_path.with_name(db_path.name + x) for x in ("-wal", "-shm"))):
        if path.exists():
            st = path.stat()
            found[path.name] = (
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return found


async def audit_cli(cfg: Path, *args: str) -> tuple[int, str, str]:
    """`chatopsd audit` in its own process, as an operator runs it beside the daemon."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatopsd",
        "audit",
        "--config",
        str(cfg),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_audit_reads_while_the_daemon_holds_the_database_and_changes_nothing(
    console_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon itself checkpoints its WAL once idle (store/sqlite.py), which changes the
    # file; this test is about the reader, so the daemon keeps its writes in the WAL here.
    monkeypatch.setattr(store_sqlite, "_CHECKPOINT_IDLE_S", 3600.0)
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n')
    for i in range(3):
        await console_app.bus.handle(
            Inbound("console", "ops", Actor("ada", "Ada"), "!help", event_id=f"e{i}")
        )
    before = files(tmp_path / "state.db")
    assert "state.db-wal" in before  # the daemon's writes sit in its WAL, not checkpointed
    del before["state.db-shm"]  # shared memory: readers mark what they read in it

    rc, out, err = await audit_cli(cfg, "--json")
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["event_id"] for r in rows] == ["e0", "e1", "e2"]
    rc, out, err = await audit_cli(cfg, "verify")
    assert rc == 0 and "audit log OK: 3 rows" in out, out + err
    after = files(tmp_path / "state.db")
    del after["state.db-shm"]
    assert after == before  # not one byte written, not even touched

    # and the daemon goes on writing while (and after) the reader looked
    await console_app.bus.handle(
        Inbound("console", "ops", Actor("ada", "Ada"), "!help", event_id="e3")
    )
    rc, out, _ = await audit_cli(cfg, "--json")
    assert rc == 0 and [json.loads(line)["event_id"] for line in out.splitlines()][-1] == "e3"


async def test_a_write_through_the_readonly_connection_fails(db: Database, tmp_path: Path) -> None:
    url = db.describe() if db.dialect == "postgresql" else None
    ro = await open_readonly(url, tmp_path / "state.db")
    try:
        refused: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
        if db.dialect == "postgresql":
            import asyncpg

            refused = (asyncpg.ReadOnlySQLTransactionError,)
        with pytest.raises(refused, match=r"read-?only"):
            await ro.write(
                "INSERT INTO kv (key, value, updated) VALUES ($1, $2, $3)", ("k", "v", 0)
            )
        entry = AuditEntry(
            datetime(2026, 11, 30, tzinfo=UTC), "console", "ops", None, "ada", "Ada",
            "message", "!help", "help", "ok", 1.0, "e1", "r1",
        )  # fmt: skip
        with pytest.raises(refused, match=r"read-?only"):
            await SqlAuditLog(ro).append(entry)
        assert await ro.fetchall("SELECT key FROM kv") == []
        assert await ro.fetchall("SELECT id FROM audit") == []
    finally:
        await ro.close()
    # the writer's own connection still writes (the reader left nothing locked)
    await db.write("INSERT INTO kv (key, value, updated) VALUES ($1, $2, $3)", ("k", "v", 0))
    row = await db.fetchone("SELECT value FROM kv WHERE key = $1", ("k",))
    assert row is not None and row[0] == "v"


async def test_audit_does_not_migrate_an_older_database(console_app: App, tmp_path: Path) -> None:
    """A database the daemon of this release has not upgraded yet is left as it is, and the
    message says who upgrades it (before, `audit` ran the migrations itself)."""
    await console_app.stop()
    con = sqlite3.connect(tmp_path / "state.db")
    con.execute("DROP TABLE recent_pages")
    con.execute("DELETE FROM schema_version WHERE version = 11")
    con.commit()
    con.close()
    before = files(tmp_path / "state.db")
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n')
    rc, out, err = await audit_cli(cfg)
    assert rc == 1 and out == ""
    assert "lacks migrations this chatopsd expects (0011_recent_pages.sql)" in err
    assert "start the daemon" in err
    assert files(tmp_path / "state.db") == before


async def test_audit_of_a_never_migrated_postgresql_database_says_so(
    pg_url: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[chatopsd]\ndatabase = "{pg_url}"\nstate_db = "{tmp_path / "s.db"}"\n')
    rc, out, err = await audit_cli(cfg)
    assert rc == 1 and out == ""
    assert "lacks migrations this chatopsd expects" in err and "start the daemon" in err
    assert "Traceback" not in err
