"""The dedupe ledger is bounded by size as well as by time (issue 15, risk): a flood of fresh
event ids cannot grow memory or the table without end; the newest claims are the ones kept."""

from __future__ import annotations

from chatopsd.store.events import SqliteEventLedger
from chatopsd.store.sqlite import Database
from tests.conftest import FakeClock


async def test_flood_of_fresh_ids_stays_bounded(db: Database, clock: FakeClock) -> None:
    ledger = SqliteEventLedger(db, clock, max_events=100)
    for i in range(1000):
        assert await ledger.claim("slack", f"Ev{i}") is True
        clock.advance(0.001)
    assert len(ledger) == 100
    assert await ledger.claim("slack", "Ev999") is False  # the newest are remembered
    await ledger.prune()
    [(count,)] = await db.fetchall("SELECT COUNT(*) FROM events")
    assert count == 100
    fresh = SqliteEventLedger(db, clock, max_events=100)
    assert await fresh.load() == 100
    assert await fresh.claim("slack", "Ev950") is False
    assert await fresh.claim("slack", "Ev10") is True  # forgotten first: the oldest
