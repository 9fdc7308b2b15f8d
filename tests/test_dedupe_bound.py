"""The dedupe ledger keeps a claim for the platforms' redelivery horizon, however many events
came since, while its memory stays bounded: a flood of fresh ids cannot grow memory without
end, and cannot push an older claim out either (before, past `max_events` cheap commands the
oldest claims were dropped, from memory and table alike, and a later redelivery ran again).
The table is pruned by time only."""

from __future__ import annotations

from chatopsd.store.events import SqlEventLedger
from chatopsd.store.sqlite import SqliteDatabase
from tests.conftest import FakeClock

HORIZON = 3600.0


async def test_a_flood_keeps_memory_bounded_and_forgets_no_claim_inside_the_horizon(
    db: SqliteDatabase, clock: FakeClock
) -> None:
    ledger = SqlEventLedger(db, clock, retention_s=HORIZON, max_events=100)
    for i in range(1000):
        assert await ledger.claim("slack", f"Ev{i}") is True
        clock.advance(1.0)
    assert len(ledger) == 100  # memory: the newest 100
    assert await ledger.claim("slack", "Ev999") is False  # known to memory
    assert await ledger.claim("slack", "Ev10") is False  # dropped from memory, not forgotten
    assert await ledger.claim("slack", "Ev0") is False
    assert await ledger.claim("slack", "Fresh") is True  # a new id is still new
    await ledger.prune()
    [(count,)] = await db.fetchall("SELECT COUNT(*) FROM events")
    assert count == 1001  # all inside the horizon: none pruned by count

    fresh = SqlEventLedger(db, clock, retention_s=HORIZON, max_events=100)  # a restart
    assert await fresh.load() == 100
    assert await fresh.claim("slack", "Ev950") is False
    assert await fresh.claim("slack", "Ev20") is False  # not loaded, still claimed
    assert await fresh.claim("slack", "New") is True


async def test_claims_older_than_the_horizon_are_forgotten_by_time(
    db: SqliteDatabase, clock: FakeClock
) -> None:
    ledger = SqlEventLedger(db, clock, retention_s=HORIZON, max_events=100)
    for i in range(300):
        await ledger.claim("slack", f"Old{i}")
    clock.advance(HORIZON + 1)
    assert await ledger.prune() == 100  # the ones memory still held
    [(count,)] = await db.fetchall("SELECT COUNT(*) FROM events")
    assert count == 0
    assert await ledger.claim("slack", "Old5") is True  # past the horizon: new again
    assert len(ledger) == 1
