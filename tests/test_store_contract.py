"""The store contract, run on SQLite and on a real PostgreSQL: every store protocol, the
migrations of both backends, and what several instances on one PostgreSQL rely on."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.core.ports import AuditEntry, ClaimUnavailable
from chatopsd.features.approvals.rules import Action, Person
from chatopsd.features.approvals.store import SqlApprovals
from chatopsd.features.status.stalking_rules import Stalker
from chatopsd.features.status.store import SqlStalkerStore
from chatopsd.ha.fence import Superseded
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.backend import open_database
from chatopsd.store.db import Database, NewerDatabase, migration_files, migrations
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.kv import SqlKeyValue
from tests.conftest import FakeClock
from tests.pg_cluster import BACKENDS, open_backend

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_backend(request, tmp_path) as database:
        yield database


def test_every_sqlite_migration_has_a_postgresql_twin() -> None:
    """In the same folder, with the same number and name."""
    lite = {(m.home, m.name) for m in migration_files("sqlite")}
    pg = {(m.home, m.name) for m in migration_files("postgresql")}
    assert len(lite) > 20  # every folder was read
    assert sorted(lite - pg) == [], "write its twin in chatopsd/<home>/migrations/postgresql/"
    assert sorted(pg - lite) == [], "write its twin in chatopsd/<home>/migrations/sqlite/"


async def test_migrated_once_and_a_newer_database_is_refused(db: Database, tmp_path: Path) -> None:
    rows = await db.fetchall("SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in rows] == [v for v, _, _ in migrations(db.dialect)]
    await db.write("INSERT INTO schema_version VALUES ($1)", (9999,))
    url = db.describe() if db.dialect == "postgresql" else None  # the same database again
    with pytest.raises(NewerDatabase, match="newer than this chatopsd knows"):
        await open_database(url, tmp_path / "state.db")


def _forget_0011(db: Database) -> list[tuple[str, tuple[object, ...]]]:
    """Turn a current database into one made by a build that had every migration but 0011
    (recent_pages): helpers number in separate ranges, so such databases exist."""
    assert 11 in [v for v, _, _ in migrations(db.dialect)]
    return [("DROP TABLE recent_pages", ()), ("DELETE FROM schema_version WHERE version = 11", ())]


async def test_a_missing_lower_migration_is_applied(db: Database, tmp_path: Path) -> None:
    await db.write_many(_forget_0011(db))
    url = db.describe() if db.dialect == "postgresql" else None  # the same database again
    again = await open_database(url, tmp_path / "state.db")
    try:
        rows = await again.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == [v for v, _, _ in migrations(db.dialect)]
        await again.write(
            "INSERT INTO recent_pages (target, at, actor, url) VALUES ($1, $2, $3, $4)",
            ("ic", 1.0, "ada", "https://example.invalid/1"),
        )
        row = await again.fetchone("SELECT actor FROM recent_pages WHERE target = $1", ("ic",))
        assert row is not None and row[0] == "ada"
    finally:
        await again.close()
    # and a newer database is still refused, gap or not
    await db.write_many([*_forget_0011(db), ("INSERT INTO schema_version VALUES ($1)", (9999,))])
    with pytest.raises(NewerDatabase, match="newer than this chatopsd knows"):
        await open_database(url, tmp_path / "state.db")


async def test_instances_filling_a_gap_at_once_apply_it_exactly_once(pg_url: str) -> None:
    from chatopsd.store.postgres import PgDatabase

    first = await PgDatabase.open(pg_url)
    try:
        await first.write_many(_forget_0011(first))
        dbs = await asyncio.gather(*(PgDatabase.open(pg_url) for _ in range(3)))
        for d in dbs:
            await d.close()
        rows = await first.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == [v for v, _, _ in migrations("postgresql")]
    finally:
        await first.close()


async def test_two_instances_starting_at_once_migrate_exactly_once(pg_url: str) -> None:
    from chatopsd.store.postgres import PgDatabase

    dbs = await asyncio.gather(*(PgDatabase.open(pg_url) for _ in range(3)))
    try:
        rows = await dbs[0].fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == [v for v, _, _ in migrations("postgresql")]
    finally:
        for d in dbs:
            await d.close()


async def test_event_claims(db: Database, clock: FakeClock) -> None:
    ledger = SqlEventLedger(db, clock, retention_s=60)
    assert await ledger.claim("slack", "Ev1")
    assert not await ledger.claim("slack", "Ev1")
    assert await ledger.claim("discord", "Ev1")  # per platform
    fresh = SqlEventLedger(db, clock, retention_s=60)  # a restart
    assert await fresh.load() == 2
    assert not await fresh.claim("slack", "Ev1")
    clock.advance(120)
    await fresh.prune()
    assert await fresh.claim("slack", "Ev1")


async def test_two_instances_claim_each_event_exactly_once(pg_url: str, clock: FakeClock) -> None:
    from chatopsd.store.postgres import PgDatabase

    a, b = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)
    try:
        la, lb = SqlEventLedger(a, clock), SqlEventLedger(b, clock)
        ids = [f"E{i}" for i in range(200)]
        won = await asyncio.gather(
            *(la.claim("slack", e) for e in ids), *(lb.claim("slack", e) for e in ids)
        )
        per_event = [int(x) + int(y) for x, y in zip(won[:200], won[200:], strict=True)]
        assert per_event == [1] * 200
        assert 0 < sum(won[:200]) < 200 or sum(won[200:]) in (0, 200)  # both raced
    finally:
        await a.close()
        await b.close()


async def test_key_value(db: Database) -> None:
    kv = SqlKeyValue(db)
    assert await kv.get("cursor") is None
    await kv.put("cursor", "41")
    await kv.put("cursor", "42")
    assert await kv.get("cursor") == "42"


def _entry(i: int, outcome: str = "ok") -> AuditEntry:
    return AuditEntry(
        T0 + timedelta(seconds=i),
        "slack",
        "C1",
        None,
        f"U{i % 2}",
        "ada" if i % 2 else "bob",
        "message",
        f"!ic {i}",
        "ic",
        outcome,
        1.5,
        f"Ev{i}",
        f"r{i}",
    )


async def test_audit_chain_query_and_append_only(db: Database) -> None:
    audit = SqlAuditLog(db)
    await asyncio.gather(*(audit.append(_entry(i)) for i in range(20)))
    await audit.append(_entry(20, "denied: role"))
    # Rows come in chain order: the 20 concurrent appends join the chain in whatever order
    # they reach the database, and the one appended after them comes last.
    recent = [e.event_id for e in await audit.since(T0 + timedelta(seconds=18))]
    assert sorted(recent[:2]) == ["Ev18", "Ev19"] and recent[2:] == ["Ev20"]
    assert [e.event_id for e in await audit.query(outcome="denied")] == ["Ev20"]
    assert len(await audit.query(actor="ada")) == 10
    assert len(await audit.query(command="ic")) == 21
    verdict = await audit.verify()
    assert verdict.ok and verdict.rows == 21
    with pytest.raises(Exception, match="append-only"):
        await db.write("UPDATE audit SET outcome = 'ok'")
    with pytest.raises(Exception, match="append-only"):
        await db.write("DELETE FROM audit")


async def test_two_instances_keep_one_audit_chain(pg_url: str) -> None:
    from chatopsd.store.postgres import PgDatabase

    a, b = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)
    try:
        la, lb = SqlAuditLog(a), SqlAuditLog(b)
        await asyncio.gather(*(la.append(_entry(i)) for i in range(30)))
        await asyncio.gather(*(lb.append(_entry(i)) for i in range(30, 60)))
        await asyncio.gather(*((la if i % 2 else lb).append(_entry(i)) for i in range(60, 100)))
        verdict = await SqlAuditLog(a).verify()
        assert verdict.ok and verdict.rows == 100
    finally:
        await a.close()
        await b.close()


def _stalker(channel: str, fp: str = "fp0") -> Stalker:
    return Stalker("slack", channel, "", 30.0, fp, "NORMAL", 100.0, 100.0, "ada")


async def test_stalkers_and_fenced_marks(db: Database) -> None:
    store = SqlStalkerStore(db)
    await store.put(_stalker("C1"))
    await store.put(_stalker("C2"))
    await store.put(_stalker("C2", "fp1"))  # an update, not a second row
    assert sorted((s.channel, s.fingerprint) for s in await store.all()) == [
        ("C1", "fp0"),
        ("C2", "fp1"),
    ]
    unfenced = [("fp9", "CRITICAL", 200.0, ("slack", "C1", ""))]
    if db.shared:
        # several instances: no token means no lease (it lapsed mid-poll): refused
        with pytest.raises(Superseded):
            await store.mark(unfenced)
        await db.write("UPDATE lease SET token = 5 WHERE id = 1")
        await store.mark(unfenced, fence=5)
    else:
        await store.mark(unfenced)  # the only process: nothing to fence
    await db.write("UPDATE lease SET token = 7 WHERE id = 1")
    # a leader holding token 6 has been superseded: nothing is written
    with pytest.raises(Superseded):
        await store.mark([("fpX", "NORMAL", 300.0, ("slack", "C1", ""))], fence=6)
    await store.mark([("fpY", "DEGRADED", 300.0, ("slack", "C2", ""))], fence=7)
    got = {s.channel: (s.fingerprint, s.verdict) for s in await store.all()}
    assert got == {"C1": ("fp9", "CRITICAL"), "C2": ("fpY", "DEGRADED")}
    await store.delete(("slack", "C1", ""))
    assert [s.channel for s in await store.all()] == ["C2"]


def _action(action_id: str, expires: datetime) -> Action:
    return Action(
        id=action_id,
        kind="approval",
        command="deploy api 1.2 production",
        summary="deploy",
        platform="slack",
        channel="C1",
        thread=None,
        requester=Person("slack", "U1", "ada@example.com"),
        requester_name="ada",
        role="sre",
        needed=2,
        state="pending",
        created_at=T0,
        expires_at=expires,
    )


async def test_approvals(db: Database) -> None:
    store = SqlApprovals(db)
    await store.create(_action("a1", T0 + timedelta(minutes=15)))
    await store.create(_action("a2", T0 + timedelta(minutes=1)))
    await store.set_message("a1", "m1")
    assert (await store.by_message("slack", "m1")).id == "a1"  # type: ignore[union-attr]
    await store.vote("a1", Person("slack", "U2"), "bob", "approve", T0)
    await store.vote("a1", Person("slack", "U2"), "bob", "approve", T0)  # again: one vote
    await store.vote("a1", Person("slack", "U3"), "cy", "approve", T0 + timedelta(seconds=1))
    got = await store.get("a1")
    assert got is not None and got.approvers == ("bob", "cy") and got.message_id == "m1"
    assert [a.id for a in await store.pending_due(T0 + timedelta(minutes=2))] == ["a2"]
    assert sorted(a.id for a in await store.pending()) == ["a1", "a2"]
    assert await store.decide("a1", "approved", "cy", T0)
    assert not await store.decide("a1", "rejected", "dan", T0)  # decided once
    assert [a.id for a in await store.undispatched()] == ["a1"]
    assert await store.mark_dispatched("a1")
    assert not await store.mark_dispatched("a1")  # dispatched once
    await store.set_result("a1", "exit 0")
    assert await store.result("a1") == "exit 0"
    assert await store.get("nope") is None


async def test_sqlite_migration_statements_keep_triggers_whole(tmp_path: Path) -> None:
    db = await open_database(None, tmp_path / "s.db")
    await db.close()
    raw = sqlite3.connect(tmp_path / "s.db")
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    raw.close()
    assert {"audit_no_update", "audit_no_delete"} <= names


async def test_claim_on_an_unreachable_shared_database_is_not_ours(
    pg_url: str, clock: FakeClock
) -> None:
    from chatopsd.store.postgres import PgDatabase

    db = await PgDatabase.open(pg_url)
    ledger = SqlEventLedger(db, clock)
    assert await ledger.claim("slack", "E0")
    await db.close()  # cut off: another instance may answer; this one must stay silent
    with pytest.raises(ClaimUnavailable):
        await ledger.claim("slack", "E1")
    assert ledger.failures == 1
    await db.close()


async def test_identity_links_and_pagerduty_cards(db: Database) -> None:
    from chatopsd.core.messages import Destination
    from chatopsd.features.pagerduty.cards_store import SqlIncidentCards
    from chatopsd.identity.store import SqlIdentityLinks

    links = SqlIdentityLinks(db)
    later = T0 + timedelta(minutes=15)
    await links.claim("discord", "42", "Ada@Example.com", "k7m2q", later)
    await links.claim("slack", "U1", "ada@example.com", "x2b9c", later)
    [claim] = [link for link in await links.holders("ADA@example.com") if link.chat == "discord:42"]
    assert (claim.email, claim.confirmed, claim.request, claim.expires) == (
        "ada@example.com",
        False,
        "k7m2q",
        later,
    )
    assert await links.by_request("k7m2q") == claim
    # confirming needs the pending claim to that very address, once
    assert not await links.confirm("discord", "42", "grace@example.com", "slack:U9")
    assert await links.confirm("discord", "42", "ada@example.com", "slack:U9")
    assert not await links.confirm("discord", "42", "ada@example.com", "slack:U9")
    done = await links.link("discord", "42")
    assert done is not None and done.confirmed_by == "slack:U9" and done.request is None
    assert await links.by_request("k7m2q") is None
    # a new claim replaces the link and is unconfirmed again; an admin's grant writes it
    await links.claim("discord", "42", "grace@example.com", "m3n4p", later)
    again = await links.link("discord", "42")
    assert again is not None and (again.email, again.confirmed) == ("grace@example.com", False)
    await links.grant("discord", "42", "linus@example.com", "an admin (request q8r7s)")
    granted = await links.link("discord", "42")
    assert granted is not None and granted.confirmed and granted.email == "linus@example.com"
    assert [link.chat for link in await links.holders("ada@example.com")] == ["slack:U1"]
    assert await links.drop("slack", "U1") and not await links.drop("slack", "U1")
    assert await links.link("slack", "U1") is None
    cards = SqlIncidentCards(db)
    here = Destination("slack", "C1")
    await cards.decide_unfenced([("PINC1", 7, "triggered", "s1")], [here])
    await cards.decide_unfenced([("PINC1", 7, "triggered", "s1")], [here])  # again: one card
    [owed] = await cards.owed()
    assert (owed.incident_id, owed.message_id, owed.wanted) == ("PINC1", None, "s1")
    await cards.shown(owed, "m1")
    assert await cards.owed() == []
    await cards.decide_unfenced([("PINC1", 7, "acknowledged", "s2")], [here])
    [edit] = await cards.owed()
    assert (edit.message_id, edit.wanted) == ("m1", "s2")
    assert await cards.by_number(7) == "PINC1" and await cards.unresolved() == ["PINC1"]
    assert await cards.states(["PINC1", "PX"]) == {"PINC1": "s2"}


async def test_followups_numbered_per_incident(db: Database) -> None:
    from chatopsd.features.followups.store import SqlFollowUps
    from chatopsd.features.incidents import rules as core
    from chatopsd.features.incidents.rules import TimelineEntry
    from chatopsd.features.incidents.store import SqlIncidentStore

    def make(incident_id: str) -> tuple[core.Incident, TimelineEntry]:
        inc = core.declare(incident_id, "x", 2, T0, "ada", "slack", "C1")
        return inc, TimelineEntry(T0, "ada", "slack", "C1", "declared", "x")

    inc = await SqlIncidentStore(db).create(2026, make)
    store = SqlFollowUps(db)
    assert [await store.add(inc.id, f"fix {i}", None, "ada", T0) for i in range(3)] == [1, 2, 3]
    await store.done(inc.id, 2, T0)
    got = await store.get(inc.id, 2)
    assert got is not None and got.text == "fix 1"
    assert [f.n for f in await store.list(inc.id)] == [1, 2, 3]
    # two writers at once (two instances' worth): every number once, none lost
    other = SqlFollowUps(db)
    added = await asyncio.gather(
        *((store, other)[i % 2].add(inc.id, f"more {i}", None, "bo", T0) for i in range(8))
    )
    assert sorted(added) == list(range(4, 12))
    # exporting is decided once: a second decision (another command, another instance) loses
    assert await store.claim(inc.id, 1) is True
    assert await store.claim(inc.id, 1) is False
    await store.release(inc.id, 1)
    assert await store.claim(inc.id, 1) is True


async def test_doctor_checks_the_postgresql_database(pg_url: str, tmp_path: Path) -> None:
    from chatopsd.doctor import check_state_db
    from chatopsd.store.postgres import PgDatabase
    from tests.conftest import make_config

    # never migrated: said so, and doctor leaves it as it was (it creates no schema)
    [fresh] = await check_state_db(make_config(tmp_path, chatopsd={"database": pg_url}))
    assert not fresh.ok and "lacks migrations" in fresh.detail, fresh.detail
    await (await PgDatabase.open(pg_url)).close()  # what the daemon's first start does
    [ok] = await check_state_db(make_config(tmp_path, chatopsd={"database": pg_url}))
    assert ok.ok and "PostgreSQL" in ok.detail
    closed = pg_url.rsplit(":", 1)[0] + ":1/nowhere"  # nothing listens on port 1
    [bad] = await check_state_db(make_config(tmp_path, chatopsd={"database": closed}))
    assert not bad.ok and "cannot connect" in bad.detail


def test_a_password_in_the_database_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    from chatopsd import config
    from chatopsd.core.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text('[chatopsd]\ndatabase = "postgresql://u:s3cret@h/db"\n')
    with pytest.raises(ConfigError, match="chatopsd_database_password") as caught:
        config.load(path)
    assert "s3cret" not in str(caught.value)


async def test_incident_changes_are_decided_on_the_stored_row_one_at_a_time(
    db: Database,
) -> None:
    from chatopsd.features.incidents import rules as core
    from chatopsd.features.incidents.rules import IllegalTransition, Incident, TimelineEntry
    from chatopsd.features.incidents.store import SqlIncidentStore

    def make(incident_id: str) -> tuple[core.Incident, TimelineEntry]:
        inc = core.declare(incident_id, "x", 2, T0, "ada", "slack", "C1")
        return inc, TimelineEntry(T0, "ada", "slack", "C1", "declared", "x")

    store, other = SqlIncidentStore(db), SqlIncidentStore(db)  # two instances' worth
    inc = await store.create(2026, make)

    def ack(who: str) -> Callable[[Incident], tuple[Incident, TimelineEntry]]:
        def step(current: Incident) -> tuple[Incident, TimelineEntry]:
            after = core.transition(current, "ack", T0)
            return after, TimelineEntry(T0, who, "slack", "C1", "acknowledged", who)

        return step

    results = await asyncio.gather(
        store.change(inc.id, ack("bo")), other.change(inc.id, ack("cy")), return_exceptions=True
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], IllegalTransition)
    timeline = [e.kind for e in await store.timeline(inc.id)]
    assert timeline.count("acknowledged") == 1  # the refused one left nothing behind

    def role(who: str) -> Callable[[Incident], tuple[Incident, TimelineEntry]]:
        def step(current: Incident) -> tuple[Incident, TimelineEntry]:
            after = core.set_role(current, who, who, T0)
            return after, TimelineEntry(T0, who, "slack", "C1", "role", who)

        return step

    # concurrent changes of different fields: neither overwrites the other
    await asyncio.gather(store.change(inc.id, role("scribe")), other.change(inc.id, role("comms")))
    stored = await store.get(inc.id)
    assert stored is not None and {"scribe", "comms"} <= set(stored.roles)
    assert await store.change("INC-2026-9999", role("scribe")) is None
