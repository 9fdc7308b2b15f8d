"""Incident store contract: ids per year, atomic state + timeline, channels, messages, restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.core.messages import Destination, Sent
from chatopsd.features.incidents import rules as core
from chatopsd.features.incidents.api import Home
from chatopsd.features.incidents.rules import Incident, TimelineEntry
from chatopsd.features.incidents.store import SqlIncidentStore
from chatopsd.store.db import Database as AnyDatabase
from chatopsd.store.sqlite import SqliteDatabase
from tests.pg_cluster import BACKENDS, integrity_errors, open_backend

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnyDatabase]:
    """Every test here that takes `db` runs on SQLite and on PostgreSQL."""
    async with open_backend(request, tmp_path) as database:
        yield database


def maker(title: str, at: datetime = T0):
    def make(incident_id: str) -> tuple[Incident, TimelineEntry]:
        inc = core.declare(incident_id, title, 2, at, "alice", "slack", "C1", service="pay")
        return inc, TimelineEntry(at, "alice", "slack", "C1", "declared", f"declared {title}")

    return make


async def test_ids_are_a_sequence_per_year_even_when_declared_at_once(db: AnyDatabase) -> None:
    store = SqlIncidentStore(db)
    made = await asyncio.gather(*(store.create(2026, maker(f"t{i}")) for i in range(5)))
    assert sorted(i.id for i in made) == [f"INC-2026-000{n}" for n in range(1, 6)]
    nxt = await store.create(2027, maker("new year", T0.replace(year=2027)))
    assert nxt.id == "INC-2027-0001"
    assert (await store.create(2026, maker("again"))).id == "INC-2026-0006"


async def test_round_trip_and_reopen(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "s.db")
    store = SqlIncidentStore(db)
    inc = await store.create(2026, maker("Payments failing"))
    acked = core.set_role(
        core.transition(inc, "ack", T0 + timedelta(minutes=2)), "scribe", "bob", T0
    )
    acked = core.link_page(acked, "https://pd.example/incidents/P1", T0)
    await store.save(acked, TimelineEntry(T0, "bob", "discord", "9", "acknowledged", "ack"))
    await store.bind_home(inc.id, Home("slack", "C777", None))
    await store.remember(inc.id, "status", Sent(Destination("slack", "C777"), "1700.1"))
    await db.close()

    db = await SqliteDatabase.open(tmp_path / "s.db")
    store = SqlIncidentStore(db)
    got = await store.get(inc.id)
    assert got == acked and got is not None and got.pagerduty == "https://pd.example/incidents/P1"
    assert [e.kind for e in await store.timeline(inc.id)] == ["declared", "acknowledged"]
    assert (await store.timeline(inc.id))[1].platform == "discord"
    assert await store.home(inc.id) == Home("slack", "C777", None)
    [sent] = await store.messages(inc.id, "status")
    assert (sent.destination, sent.message_id) == (Destination("slack", "C777"), "1700.1")
    assert [i.id for i in await store.open()] == [inc.id]
    await db.close()


async def test_state_change_and_entry_commit_together_or_not_at_all(db: AnyDatabase) -> None:
    store = SqlIncidentStore(db)
    inc = await store.create(2026, maker("x"))
    resolved = core.transition(inc, "resolve", T0, "fixed")
    # an entry the schema refuses (NOT NULL actor) must take the state change down with it
    bad = TimelineEntry(T0, None, "slack", "C1", "resolved", "fixed")  # type: ignore[arg-type]
    with pytest.raises(integrity_errors()):
        await store.save(resolved, bad)
    assert (await store.get(inc.id)).state is core.State.DECLARED  # type: ignore[union-attr]
    assert len(await store.timeline(inc.id)) == 1


async def test_channel_and_thread_lookup(db: AnyDatabase) -> None:
    store = SqlIncidentStore(db)
    a = await store.create(2026, maker("a"))
    b = await store.create(2026, maker("b"))
    await store.bind_home(a.id, Home("slack", "CINC", None))  # a channel of its own
    await store.bind_home(b.id, Home("console", "ops", "17"))  # a thread in #ops
    assert await store.incident_at("slack", "CINC", None) == a.id
    assert await store.incident_at("slack", "CINC", "123.4") == a.id  # a thread in its channel
    assert await store.incident_at("console", "ops", "17") == b.id
    assert await store.incident_at("console", "ops", None) is None  # #ops itself is no incident's
    assert await store.incident_at("console", "ops", "18") is None
    assert await store.incident_at("discord", "CINC", None) is None


async def test_messages_and_pulses(db: AnyDatabase) -> None:
    store = SqlIncidentStore(db)
    inc = await store.create(2026, maker("a"))
    await store.remember(inc.id, "announce", Sent(Destination("slack", "C1"), "m1"))
    await store.remember(inc.id, "announce", Sent(Destination("discord", "5"), "m2"))
    assert await store.incident_for_message("discord", "m2") == inc.id
    assert await store.incident_for_message("slack", "m2") is None
    assert len(await store.messages(inc.id, "announce")) == 2
    assert await store.last_pulse(inc.id) is None
    await store.mark_pulse(inc.id, T0)
    assert await store.last_pulse(inc.id) == T0


async def test_open_lists_worst_first_and_skips_resolved(db: AnyDatabase) -> None:
    store = SqlIncidentStore(db)
    low = await store.create(2026, maker("low"))
    high = await store.create(2026, maker("high"))
    await store.save(core.escalate(high, 1, T0), TimelineEntry(T0, "a", "s", "c", "escalated", "x"))
    done = await store.create(2026, maker("done"))
    await store.save(
        core.transition(done, "resolve", T0, "ok"),
        TimelineEntry(T0, "a", "s", "c", "resolved", "ok"),
    )
    assert [i.id for i in await store.open()] == [high.id, low.id]
