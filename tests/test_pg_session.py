"""PostgreSQL: a pooled connection goes back to the pool as it is (no reset statement per
use), so nothing the store does may outlive its own transaction on it: the answered mark's
lazy commit and the audit chain's advisory lock end with their transactions. On the real
server, one connection in the pool so that every statement meets the one before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from chatopsd.core.ports import AuditEntry
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.postgres import PgDatabase
from tests.conftest import FakeClock


@pytest.fixture
async def one(pg_url: str) -> AsyncIterator[PgDatabase]:
    db = await PgDatabase.open(pg_url, min_size=1, max_size=1)
    yield db
    await db.close()


async def test_the_answered_mark_is_recorded_and_its_lazy_commit_ends_with_it(
    one: PgDatabase, clock: FakeClock
) -> None:
    ledger = SqlEventLedger(one, clock, instance="a")
    assert await ledger.claim("slack", "Ev1", '{"text": "!help"}') is True
    await ledger.answered("slack", "Ev1")
    row = await one.fetchone(
        "SELECT done_at, payload FROM events WHERE platform = $1 AND event_id = $2",
        ("slack", "Ev1"),
    )
    assert row is not None and row["done_at"] is not None and row["payload"] is None
    # the same (only) connection: later commits wait for the disk again
    setting = await one.fetchone("SHOW synchronous_commit")
    assert setting is not None and setting[0] == "on"
    # an answered claim is nobody's to take over
    assert await ledger.orphans(dead_after_s=0.0, max_age_s=3600) == []


async def test_the_audit_chain_lock_is_gone_once_the_row_is_in(one: PgDatabase) -> None:
    audit = SqlAuditLog(one)
    at = datetime(2026, 12, 5, tzinfo=UTC)
    entry = AuditEntry(at, "slack", "C1", None, "U1", "Jane", "message", "!help", "help", "ok",
                       1.0, "Ev1", "ref1")  # fmt: skip
    await audit.append(entry)
    locks = await one.fetchone(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    )
    assert locks is not None and locks[0] == 0
    verdict = await audit.verify()
    assert verdict.ok and verdict.rows == 1
