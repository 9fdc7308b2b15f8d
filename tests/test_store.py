"""Store contract: migrations, durability, group commit atomicity, ledger, audit, kv."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from chatopsd.core.ports import AuditEntry
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.kv import SqlKeyValue
from chatopsd.store.sqlite import SqliteDatabase, migrations
from tests.conftest import FakeClock


def test_migrations_are_numbered_uniquely_from_one() -> None:
    found = migrations()
    assert [v for v, _, _ in found] == sorted({v for v, _, _ in found})
    assert found[0][0] == 1


async def test_opening_twice_applies_migrations_once(tmp_path: Path) -> None:
    for _ in range(2):
        db = await SqliteDatabase.open(tmp_path / "s.db")
        rows = await db.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == [v for v, _, _ in migrations()]
        mode = await db.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"
        await db.close()


async def test_writes_are_visible_after_reopen(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "s.db")
    kv = SqlKeyValue(db)
    await kv.put("cursor", "41")
    await kv.put("cursor", "42")
    await db.close()
    db = await SqliteDatabase.open(tmp_path / "s.db")
    assert await SqlKeyValue(db).get("cursor") == "42"
    assert await SqlKeyValue(db).get("absent") is None
    await db.close()


async def test_concurrent_writes_share_commits_and_a_bad_group_fails_alone(
    db: SqliteDatabase,
) -> None:
    good = [db.write("INSERT INTO kv VALUES ($1, $2, 0)", (f"k{i}", str(i))) for i in range(50)]
    bad = db.write_many(
        [
            ("INSERT INTO kv VALUES ('atomic', 'x', 0)", ()),
            ("INSERT INTO nosuchtable VALUES (1)", ()),
        ]
    )
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert all(r is None for r in results[:50])
    assert isinstance(results[50], sqlite3.OperationalError)
    rows = await db.fetchall("SELECT key FROM kv")
    keys = {r[0] for r in rows}
    assert len(keys) == 50 and "atomic" not in keys  # the bad group rolled back as a whole


async def test_closed_database_refuses_writes(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "s.db")
    await db.close()
    with pytest.raises(RuntimeError, match="closed"):
        await db.write("INSERT INTO kv VALUES ('a', 'b', 0)")


async def test_ledger_claims_once_and_prunes(db: SqliteDatabase, clock: FakeClock) -> None:
    ledger = SqlEventLedger(db, clock, retention_s=3600)
    assert await ledger.claim("slack", "Ev1") is True
    assert await ledger.claim("slack", "Ev1") is False
    clock.advance(7200)
    assert await ledger.claim("slack", "Ev2") is True
    assert await ledger.prune() == 1
    fresh = SqlEventLedger(db, clock, retention_s=3600)
    assert await fresh.load() == 1
    assert await fresh.claim("slack", "Ev2") is False


async def test_audit_round_trip_and_since(db: SqliteDatabase, clock: FakeClock) -> None:
    log = SqlAuditLog(db)
    first = AuditEntry(
        clock.now(),
        "slack",
        "C1",
        "169.1",
        "U1",
        "Ada",
        "message",
        "!ic",
        "ic",
        "ok",
        0.4,
        "Ev1",
        "abcd",
    )
    await log.append(first)
    clock.advance(60)
    second = AuditEntry(
        clock.now(),
        "discord",
        "9",
        None,
        "7",
        "Bob",
        "slash",
        "/status",
        "status",
        "ok",
        1.5,
        "In1",
        "ef01",
    )
    await log.append(second)
    assert list(await log.since(None)) == [first, second]
    assert list(await log.since(clock.now() - timedelta(seconds=30))) == [second]
