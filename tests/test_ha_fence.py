"""Fenced singleton writes and cross-instance claims, on SQLite and on a real
PostgreSQL: the stores' contract first, then two App instances sharing one PostgreSQL (each
with its own pool and PgLease), against the fake Statuspage, the fake PagerDuty, the fake
Mattermost and a fake HTTP status source.

A "deposed" leader is one whose token was superseded in the `lease` row (as a takeover does)
while it still counts itself leader, as a leader paused past its lease does when it wakes up:
only the database fence stands between it and a stale send."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Destination, Inbound
from chatopsd.features.incidents import rules as core
from chatopsd.features.incidents.rules import TimelineEntry
from chatopsd.features.incidents.store import SqlIncidentStore
from chatopsd.features.oncall.handoffs import Handoffs
from chatopsd.features.oncall.lookahead import LookaheadRefresher
from chatopsd.features.oncall.shift_rules import Shift
from chatopsd.features.pagerduty.cards import IncidentSync
from chatopsd.features.pagerduty.cards_store import SqlClickClaims, SqlIncidentCards
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from chatopsd.features.status.stalkers import Stalkers
from chatopsd.features.statuspage.commands import PublicStatus
from chatopsd.features.statuspage.store import SqlPublications
from chatopsd.ha.claims import CLAIM_STALE_SECONDS
from chatopsd.ha.fence import Superseded
from chatopsd.store.db import Database
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import ALICE, BOT, TOKEN, FakeMattermost
from tests.fakes.monitoring import FakeMonitoring
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fakes.statuspage import API_KEY, PAGE_ID, FakeStatuspage
from tests.fixtures.mattermost import plain, server  # noqa: F401
from tests.fixtures.monitoring import fake  # noqa: F401
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401
from tests.pg_cluster import BACKENDS, open_backend
from tests.waiting import eventually

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HERE = Destination("slack", "C1")


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_backend(request, tmp_path) as database:
        yield database


async def supersede(db: Database) -> int:
    """What a takeover does to the lease row: a newer token (and no holder yet)."""
    await db.write("UPDATE lease SET token = token + 1, holder = NULL WHERE id = 1")
    row = await db.fetchone("SELECT token FROM lease WHERE id = 1")
    assert row is not None
    return int(row[0])


# -- the stores' contract, on both databases -------------------------------------------------


async def test_status_page_queue_writes_are_fenced(db: Database) -> None:
    def make(incident_id: str) -> tuple[core.Incident, TimelineEntry]:
        inc = core.declare(incident_id, "x", 1, T0, "ada", "slack", "C1")
        return inc, TimelineEntry(T0, "ada", "slack", "C1", "declared", "x")

    inc = await SqlIncidentStore(db).create(2026, make)
    store = SqlPublications(db)
    await store.start(inc.id, ["cmp"], {"name": "x"}, ("slack:U1", "Ada"), T0)
    [call] = await store.heads()
    old = await supersede(db)
    new = await supersede(db)
    with pytest.raises(Superseded):
        await store.note_attempt(call.id, fence=old)
    with pytest.raises(Superseded):
        await store.succeeded(call, "sp1", None, "investigating", T0, fence=old)
    with pytest.raises(Superseded):
        await store.attempt_failed(call.id, "x", T0, True, fence=old)
    [still] = await store.heads()
    assert (still.attempts, still.maybe_done, still.last_error) == (0, False, None)
    pub = await store.get(inc.id)
    assert pub is not None and pub.page_incident_id is None  # nothing was marked sent

    assert await store.note_attempt(call.id, fence=new)  # the current leader claims it
    [claimed] = await store.heads()
    assert (claimed.attempts, claimed.maybe_done) == (1, True)
    await store.succeeded(call, "sp1", "https://stspg.io/x", "investigating", T0, fence=new)
    assert await store.heads() == []
    assert not await store.note_attempt(call.id, fence=new)  # done: nobody sends it again
    pub = await store.get(inc.id)
    assert pub is not None and pub.page_incident_id == "sp1"


async def test_no_token_means_the_only_instance_or_no_lease(db: Database) -> None:
    """Every fenced write, without a token: written on one instance (nothing to fence);
    refused with Superseded, and nothing written, on a shared database (no lease)."""

    def make(incident_id: str) -> tuple[core.Incident, TimelineEntry]:
        inc = core.declare(incident_id, "x", 1, T0, "ada", "slack", "C1")
        return inc, TimelineEntry(T0, "ada", "slack", "C1", "declared", "x")

    inc = await SqlIncidentStore(db).create(2026, make)
    pubs = SqlPublications(db)
    await pubs.start(inc.id, ["cmp"], {"name": "x"}, ("slack:U1", "Ada"), T0)
    [call] = await pubs.heads()
    cards = SqlIncidentCards(db)
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: pubs.note_attempt(call.id),
        lambda: pubs.attempt_failed(call.id, "x", T0, True),
        lambda: pubs.succeeded(call, "sp1", None, "investigating", T0),
        lambda: cards.decide([("PINC1", 1, "triggered", "s1")], [HERE]),
    ]
    for write in writes:
        if db.shared:
            with pytest.raises(Superseded):
                await write()
        else:
            await write()
    if db.shared:
        [still] = await pubs.heads()
        assert (still.attempts, still.last_error) == (0, None)
        assert await cards.owed() == []
    else:
        assert await pubs.heads() == [] and len(await cards.owed()) == 1
    # a click's own card update is no singleton work: written on any instance
    await cards.decide_unfenced([("PINC2", 2, "triggered", "s2")], [HERE])
    assert "PINC2" in {o.incident_id for o in await cards.owed()}


async def test_pagerduty_card_decide_and_delivery_claim_are_fenced(db: Database) -> None:
    cards = SqlIncidentCards(db)
    old = await supersede(db)
    new = await supersede(db)
    with pytest.raises(Superseded):
        await cards.decide([("PINC1", 1, "triggered", "s1")], [HERE], fence=old)
    assert await cards.owed() == [] and await cards.state("PINC1") is None
    await cards.decide([("PINC1", 1, "triggered", "s1")], [HERE], fence=new)
    [owed] = await cards.owed()
    with pytest.raises(Superseded):  # a deposed leader may not post it
        await cards.claim(owed, fence=old)
    claim = await cards.claim(owed, fence=new)
    assert claim is not None
    await cards.shown(owed, "m1")
    assert await cards.owed() == []
    await cards.decide([("PINC1", 1, "acknowledged", "s2")], [HERE], fence=new)
    [edit] = await cards.owed()
    with pytest.raises(Superseded):  # nor edit it
        await cards.claim(edit, fence=old)
    assert (edit.message_id, edit.wanted) == ("m1", "s2")


async def test_a_card_is_delivered_by_one_instance_at_a_time(db: Database) -> None:
    cards = SqlIncidentCards(db)
    await cards.decide_unfenced([("PINC1", 1, "triggered", "s1")], [HERE])
    [owed] = await cards.owed()
    first = await cards.claim_unfenced(owed, now=1000.0)
    assert first is not None
    second = await cards.claim_unfenced(owed, now=1001.0)
    if not db.shared:
        # one process: its own bookkeeping keeps one delivery per card; nothing to wait for
        assert second is not None
        return
    assert second is None  # another instance is posting it
    await cards.release(owed, "not-mine")  # only the maker frees a claim
    assert await cards.claim_unfenced(owed, now=1002.0) is None
    await cards.release(owed, first)
    third = await cards.claim_unfenced(owed, now=1003.0)
    assert third is not None
    # the instance that held it died: taken over once stale, or at once by a newer leader
    assert await cards.claim_unfenced(owed, now=1003.0 + CLAIM_STALE_SECONDS - 1) is None
    assert await cards.claim_unfenced(owed, now=1004.0 + CLAIM_STALE_SECONDS) is not None
    token = await supersede(db)
    held = await cards.claim(owed, fence=token, now=2000.0)
    assert held is not None
    newer = await supersede(db)
    assert await cards.claim(owed, fence=newer, now=2001.0) is not None
    await cards.shown(owed, "m1")  # the post is recorded, and the claim freed
    assert await cards.owed() == []


async def test_one_click_claim_per_incident_and_action(db: Database) -> None:
    claims = SqlClickClaims(db)
    won = await claims.claim("PINC1", "acknowledged", "Grace", 1000.0)
    assert won is not None
    assert await claims.claim("PINC1", "acknowledged", "Ada", 1000.5) is None
    assert await claims.holder("PINC1", "acknowledged") == "Grace"
    other = await claims.claim("PINC1", "resolved", "Ada", 1001.0)  # another action
    assert other is not None
    await claims.release("PINC1", "acknowledged", "not-mine")
    assert await claims.claim("PINC1", "acknowledged", "Ada", 1002.0) is None
    await claims.release("PINC1", "acknowledged", won)
    again = await claims.claim("PINC1", "acknowledged", "Ada", 1003.0)
    assert again is not None
    # an instance that died mid-write leaves its claim: taken over once it is stale
    assert await claims.claim("PINC1", "acknowledged", "Alan", 1003.0 + 1) is None
    late = 1004.0 + CLAIM_STALE_SECONDS
    assert await claims.claim("PINC1", "acknowledged", "Alan", late, "slack:E1") is not None
    assert await claims.holder("PINC1", "acknowledged") == "Alan"
    # the same click handled again (its instance died; a survivor took the command over)
    # takes its own claim over at once; another click still waits
    assert await claims.claim("PINC1", "acknowledged", "Ada", late + 1, "slack:E2") is None
    assert await claims.claim("PINC1", "acknowledged", "Alan", late + 1, "slack:E1") is not None
    assert await claims.claim("PINC1", "acknowledged", "Ada", late + 2, "") is None


# -- two instances on one PostgreSQL ----------------------------------------------------------

_n = itertools.count(1)
INC = "INC-2026-0001"
DECLARE = '!incident declare --sev 1 "Payments failing" --service payments'
LONG_LEASE = 60.0  # the leader keeps counting itself leader for the whole test


class Pair:
    """Two instances on one PostgreSQL: `a` started first (the leader), then `b`."""

    def __init__(self, a: App, b: App, out: dict[str, io.StringIO]) -> None:
        self.a, self.b, self.out = a, b, out

    async def handover(self) -> None:
        """`a` goes away (its lock connection with it); `b` takes the lease."""
        await self.a.stop()
        for _ in range(100):
            await self.b.lease.tick()
            if self.b.lease.leader:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("b never took the lease")


async def two_apps(
    tmp_path: Path, pg_url: str, clock: FakeClock, **sections: Any
) -> tuple[App, App, dict[str, io.StringIO]]:
    apps, out = [], {}
    for name in ("a", "b"):
        out[name] = io.StringIO()
        (tmp_path / name).mkdir()
        cfg = make_config(
            tmp_path / name,
            chatopsd={"database": pg_url, "instance": name, "lease_seconds": LONG_LEASE},
            console={"format": "jsonl"},
            ratelimit={"burst": 100},
            **sections,
        )
        app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out[name]))
        await app.start()
        apps.append(app)
    a, b = apps
    assert a.lease.leader and not b.lease.leader
    return a, b, out


@pytest.fixture
async def page() -> AsyncIterator[FakeStatuspage]:
    server = FakeStatuspage()
    await server.start()
    yield server
    await server.close()
    assert server.violations == []


def statuspage_section(page: FakeStatuspage, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": page.url,
        "api_key": API_KEY,
        "page_id": PAGE_ID,
        "components": {"payments": "cmp_pay"},
        "auto_publish": ["SEV-1"],
        "timeout_seconds": 0.5,
        **extra,
    }


@pytest.fixture
async def sp_pair(
    tmp_path: Path, pg_url: str, page: FakeStatuspage, clock: FakeClock
) -> AsyncIterator[Pair]:
    a, b, out = await two_apps(tmp_path, pg_url, clock, statuspage=statuspage_section(page))
    # the tests drive the queues themselves
    await a.part(PublicStatus).stop()
    await b.part(PublicStatus).stop()
    yield Pair(a, b, out)
    await b.stop()
    await a.stop()


async def say(app: App, text: str, actor: Actor | None = None) -> str:
    n = next(_n)
    event = Inbound(
        "console",
        "ops",
        actor or Actor("alice", "alice"),
        text,
        event_id=f"f{n}",
        message_id=f"m{n}",
    )
    return "\n".join(r.plain() for r in await app.bus.handle(event))


async def published_said(app: App, out: io.StringIO) -> list[str]:
    await app.outbox.flush(5)
    return [line for line in out.getvalue().splitlines() if "Status page: published" in line]


async def test_a_follower_queues_and_the_leader_sends_exactly_once(
    sp_pair: Pair, page: FakeStatuspage
) -> None:
    a, b = sp_pair.a, sp_pair.b
    assert "declared (SEV-1)" in await say(b, DECLARE)  # auto-published: queued on b
    assert await b.part(PublicStatus).drain() is None  # a follower sends nothing
    assert page.hits == 0
    await a.part(PublicStatus).drain()  # the leader picks up what b queued
    assert len(page.calls("POST")) == 1
    await a.part(PublicStatus).drain()
    await b.part(PublicStatus).drain()
    assert len(page.calls("POST")) == 1 and len(page.incidents) == 1
    assert "investigating https://stspg.io/fake1" in await say(b, f"!incident status {INC}")
    assert len(await published_said(a, sp_pair.out["a"])) == 1


async def test_a_deposed_leader_sends_nothing_and_the_next_one_sends_once(
    sp_pair: Pair, page: FakeStatuspage
) -> None:
    a, b = sp_pair.a, sp_pair.b
    await say(b, DECLARE)
    await supersede(a.db)
    assert a.lease.leader  # paused past its lease: it still believes it leads
    await a.part(PublicStatus).drain()
    assert page.hits == 0  # the fence refused its claim: no request went out
    rows = await a.db.fetchall("SELECT attempts, maybe_done FROM public_outbox")
    assert [tuple(r) for r in rows] == [(0, 0)]
    await sp_pair.handover()
    await b.part(PublicStatus).drain()
    assert len(page.calls("POST")) == 1
    assert len(await published_said(b, sp_pair.out["b"])) == 1


@pytest.mark.parametrize("how", ["answer lost", "leader died waiting"])
async def test_the_next_leader_checks_a_lost_answer_before_sending_again(
    sp_pair: Pair, page: FakeStatuspage, clock: FakeClock, how: str
) -> None:
    a, b = sp_pair.a, sp_pair.b
    await say(a, DECLARE)
    if how == "answer lost":
        page.fault = "badjson"  # created on the page; the answer is malformed
        await a.part(PublicStatus).drain()
    else:
        page.fault = "hang-after"  # created on the page; the answer never comes
        sending = asyncio.ensure_future(a.part(PublicStatus).drain())
        await asyncio.wait_for(page.created.wait(), 5)
        sending.cancel()  # the leader dies mid-call
        await asyncio.gather(sending, return_exceptions=True)
    assert len(page.calls("POST")) == 1
    page.fault = None
    await sp_pair.handover()
    clock.advance(5)
    await b.part(PublicStatus).drain()
    assert len(page.calls("POST")) == 1  # found by our metadata, not created again
    assert len(page.incidents) == 1
    assert "investigating https://stspg.io/fake1" in await say(b, f"!incident status {INC}")
    await say(b, f"!incident resolve {INC} fixed")
    clock.advance(1)
    await b.part(PublicStatus).drain()
    assert page.incidents["spinc1"]["status"] == "resolved"


async def test_the_leaders_worker_picks_up_a_followers_call_without_a_kick(
    tmp_path: Path, pg_url: str, page: FakeStatuspage, clock: FakeClock
) -> None:
    a, b, _ = await two_apps(tmp_path, pg_url, clock, statuspage=statuspage_section(page))
    try:
        a.part(PublicStatus).poll_seconds = 0.05  # how often the leader looks (lease_seconds / 5)
        a.part(PublicStatus).kick()  # let its worker start waiting with the short interval
        await say(b, DECLARE)  # b's kick reaches only b, which does not send
        await asyncio.wait_for(page.created.wait(), 10)

        async def drained() -> bool:
            return not await a.db.fetchall("SELECT 1 FROM public_outbox WHERE state = 'pending'")

        await eventually(drained, timeout=4)
        assert len(page.calls("POST")) == 1
    finally:
        await b.stop()
        await a.stop()


# -- PagerDuty incident cards and clicks, two instances ---------------------------------------

GRACE = Actor("u-grace", "Grace")
ADA = Actor("u-ada", "Ada")


@pytest.fixture
async def pd_pair(
    tmp_path: Path, pg_url: str, pd: FakePagerDuty, clock: FakeClock
) -> AsyncIterator[Pair]:
    pd.now = clock.now
    section = pd_section(
        pd,
        service_ids=["PSVC1"],
        incident_channels=["console:incidents"],
        incident_poll_seconds=3600,  # the tests run the poll themselves
        users={"console:u-grace": "grace@example.com", "console:u-ada": "ada@example.com"},
    )
    a, b, out = await two_apps(
        tmp_path,
        pg_url,
        clock,
        pagerduty=section,
        roles={"oncall": ["console:u-grace", "console:u-ada"]},
    )
    await first_refresh(a)
    yield Pair(a, b, out)
    await b.stop()
    await a.stop()


def cards_in(out: io.StringIO, title: str) -> int:
    return out.getvalue().count(f"PagerDuty #1: {title}")


async def run(step: Callable[[], Awaitable[None]], app: App) -> None:
    await step()
    await app.outbox.flush(5)


async def test_a_deposed_leaders_poll_posts_no_card(pd_pair: Pair, pd: FakePagerDuty) -> None:
    a, b = pd_pair.a, pd_pair.b
    assert a.part(IncidentSync) is not None and b.part(IncidentSync) is not None
    pd.trigger("Database on fire", assignees=["PADA"])
    await supersede(a.db)
    assert a.lease.leader
    await run(a.part(IncidentSync).poll, a)
    assert cards_in(pd_pair.out["a"], "Database on fire") == 0
    assert await a.db.fetchall("SELECT 1 FROM pd_cards") == []  # nothing decided either
    await pd_pair.handover()
    await run(b.part(IncidentSync).poll, b)
    await run(b.part(IncidentSync).poll, b)
    assert cards_in(pd_pair.out["b"], "Database on fire") == 1


async def test_a_leader_deposed_between_decide_and_post_posts_nothing(
    pd_pair: Pair, pd: FakePagerDuty
) -> None:
    a, b = pd_pair.a, pd_pair.b
    assert a.part(IncidentSync) is not None and b.part(IncidentSync) is not None
    pd.trigger("Database on fire", assignees=["PADA"])
    await a.part(IncidentSync).decide()  # decided while it led; the post is owed
    await supersede(a.db)
    await run(a.part(IncidentSync).deliver, a)  # it wakes up and tries to post
    assert cards_in(pd_pair.out["a"], "Database on fire") == 0
    await pd_pair.handover()
    await run(b.part(IncidentSync).poll, b)  # the owed card, posted once by the new leader
    await run(b.part(IncidentSync).poll, b)
    assert cards_in(pd_pair.out["b"], "Database on fire") == 1


async def test_two_instances_clicking_at_once_make_one_pagerduty_write(
    pd_pair: Pair, pd: FakePagerDuty
) -> None:
    a, b = pd_pair.a, pd_pair.b
    assert a.part(IncidentSync) is not None
    pd.trigger("Queue backlog", assignees=["PADA"])
    await run(a.part(IncidentSync).poll, a)
    pd.gate = asyncio.Event()  # hold a's write in flight while b's click lands
    first = asyncio.ensure_future(say(a, "!pd ack PINC001", actor=GRACE))
    await eventually(lambda: pd.from_emails, timeout=2)
    assert pd.from_emails, "a's write never reached PagerDuty"
    second = await say(b, "!pd ack PINC001", actor=ADA)
    pd.gate.set()
    winner = await first
    assert "already acknowledged by Grace" in second
    assert "acknowledged by Grace Hopper" in winner
    assert pd.writes == [("PUT", "/incidents/PINC001", "grace@example.com")]


async def test_pd_ack_mine_takes_the_click_claim_of_each_incident(
    pd_pair: Pair, pd: FakePagerDuty
) -> None:
    """Grace acknowledges #1 on instance a while Ada's `!pd ack mine` runs on b: #1 gets one
    write (Grace's), #2 (nobody else's) is acknowledged by Ada."""
    a, b = pd_pair.a, pd_pair.b
    assert a.part(IncidentSync) is not None
    pd.trigger("Queue backlog", assignees=["PADA"])
    pd.trigger("Disk full", assignees=["PADA"])
    await run(a.part(IncidentSync).poll, a)
    pd.gate = asyncio.Event()  # hold the writes in flight
    first = asyncio.ensure_future(say(a, "!pd ack PINC001", actor=GRACE))
    await eventually(lambda: pd.from_emails, timeout=2)
    assert pd.from_emails == ["grace@example.com"], "a's write never reached PagerDuty"
    mine = asyncio.ensure_future(say(b, "!pd ack mine", actor=ADA))
    await eventually(lambda: len(pd.from_emails) == 2, timeout=2)
    assert pd.from_emails == ["grace@example.com", "ada@example.com"]
    pd.gate.set()
    assert "acknowledged by Grace Hopper" in await first
    answer = await mine
    assert "Acknowledged #2 as Ada Lovelace." in answer, answer
    assert "Already being acknowledged: #1 (by Grace)." in answer, answer
    assert sorted(pd.writes) == [
        ("PUT", "/incidents/PINC001", "grace@example.com"),
        ("PUT", "/incidents/PINC002", "ada@example.com"),
    ]


# -- the on-call lookahead on a follower ------------------------------------------------------

MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


async def run_job(app: App, name: str) -> None:
    """One run of a scheduled job as the scheduler runs it (leader: the job; follower: its
    follower step)."""
    job = app.scheduler._scheduler.get_job(name)
    assert job is not None, name
    await job.func()


async def test_a_follower_answers_ic_next_from_the_leaders_latest_refresh(
    tmp_path: Path, pg_url: str, pd: FakePagerDuty, clock: FakeClock
) -> None:
    pd.now = clock.now
    pd.shifts["PIC1"] = [("PADA", 1, MON8, MON8 + DAY), ("PGRACE", 1, MON8 + DAY, MON8 + 2 * DAY)]
    a, b, _ = await two_apps(tmp_path, pg_url, clock, pagerduty=pd_section(pd, lookahead_days=7))
    try:
        await first_refresh(a)
        await run_job(a, "pagerduty-refresh")
        await run_job(b, "pagerduty-refresh")
        assert "then Grace Hopper from Tue 08:00" in await say(b, "!ic next")
        # the rotation changes; the leader's next refresh reads it
        pd.shifts["PIC1"] = [
            ("PADA", 1, MON8, MON8 + DAY),
            ("PALAN", 1, MON8 + DAY, MON8 + 2 * DAY),
        ]
        await run_job(a, "pagerduty-refresh")
        assert "then Alan Turing from Tue 08:00" in await say(a, "!ic next")
        await run_job(b, "pagerduty-refresh")  # the follower's round of the same job
        answer = await say(b, "!ic next")
        assert "then Alan Turing from Tue 08:00" in answer, answer
        assert "Grace Hopper" not in answer
    finally:
        await b.stop()
        await a.stop()


# -- the status stalker: a lease that lapses in the middle of a poll ---------------------------


async def test_a_poll_whose_lease_lapsed_midway_posts_and_writes_nothing(
    tmp_path: Path, pg_url: str, fake: FakeMonitoring, clock: FakeClock
) -> None:
    source = {
        "kind": "http",
        "name": "statuspage",
        "url": fake.url + "/api/v2/status.json",
        "field": "status.indicator",
        "timeout_seconds": 30,
    }
    status = {"sources": [source], "stalk_seconds": 3600}
    a, b, out = await two_apps(tmp_path, pg_url, clock, status=status)
    pair = Pair(a, b, out)
    try:
        assert "Stalking" in await say(a, "!status stalk")
        before = await a.db.fetchall("SELECT fingerprint, verdict, posted_at FROM stalkers")
        fake.doc = {"status": {"indicator": "major"}}
        clock.advance(3600)  # the stalker's interval: the change is due
        fake.gate = asyncio.Event()  # the poll is held in the middle of reading the source
        polling = asyncio.ensure_future(a.part(Stalkers).poll())
        await asyncio.wait_for(fake.entered.wait(), 10)
        await supersede(a.db)  # another instance took the lease over meanwhile
        await a.lease.tick()  # a finds out: it no longer leads and has no token
        assert not a.lease.leader and a.lease.token is None
        fake.gate.set()
        fake.gate = None
        result = await polling
        assert result.posted == 0
        await a.outbox.flush(5)
        assert "Status changed" not in out["a"].getvalue()
        after = await a.db.fetchall("SELECT fingerprint, verdict, posted_at FROM stalkers")
        assert [tuple(r) for r in after] == [tuple(r) for r in before]  # nothing written
        await pair.handover()
        await b.part(Stalkers).resync()
        assert (await b.part(Stalkers).poll()).posted == 1  # the change, posted once by the leader
        assert (await b.part(Stalkers).poll()).posted == 0
        await b.part(Stalkers).wait_posted()
        await b.outbox.flush(5)
        assert out["b"].getvalue().count("Status changed: CRITICAL") == 1
    finally:
        await b.stop()
        await a.stop()


async def test_a_follower_never_pairs_old_shifts_with_a_new_refresh_time(
    tmp_path: Path, pg_url: str, pd: FakePagerDuty, clock: FakeClock
) -> None:
    """The leader refreshes the lookahead over and over (each refresh: a new person, a new
    as_of) while the follower reloads it: every load is one refresh, never a mix."""

    def ic(shifts: tuple[Shift, ...]) -> list[str]:
        return [s.person_id for s in shifts if s.schedule_id == "PIC1"]

    pd.now = clock.now
    people = ["PADA", "PGRACE", "PALAN"]
    pd.shifts["PIC1"] = [("PADA", 1, MON8, MON8 + 2 * DAY)]
    a, b, _ = await two_apps(tmp_path, pg_url, clock, pagerduty=pd_section(pd, lookahead_days=7))
    try:
        await first_refresh(a)
        assert a.part(LookaheadRefresher) is not None and b.part(LookaheadRefresher) is not None
        expected: dict[datetime, str] = {}
        rounds = 40
        start = clock.now()
        for i in range(1, rounds + 1):  # the plan: refresh i at start + i min, person i % 3
            expected[start + timedelta(minutes=i)] = people[i % 3]
        done = asyncio.Event()

        async def lead() -> None:
            assert a.part(LookaheadRefresher) is not None
            try:
                for i in range(1, rounds + 1):
                    pd.shifts["PIC1"] = [(people[i % 3], 1, MON8, MON8 + 2 * DAY)]
                    clock.advance(60)
                    assert await a.part(LookaheadRefresher).refresh()
            finally:
                done.set()

        leading = asyncio.ensure_future(lead())
        seen = 0
        while not done.is_set():
            await b.part(LookaheadRefresher).load()
            look = b.part(LookaheadRefresher).lookahead
            if look.as_of in expected:
                seen += 1
                assert ic(look.shifts) == [expected[look.as_of]], look
        await leading
        await b.part(LookaheadRefresher).load()
        assert b.part(LookaheadRefresher).lookahead.as_of == start + timedelta(minutes=rounds)
        assert ic(b.part(LookaheadRefresher).lookahead.shifts) == [people[rounds % 3]]
        assert seen > 0
    finally:
        await b.stop()
        await a.stop()


# -- handoff announcements: a deposed leader ---------------------------------------------------

ADA_TO_GRACE = "🔁 IC Primary: Ada Lovelace → Grace Hopper"


def handoffs_in(out: io.StringIO) -> list[str]:
    """The handoff announcements among the console's JSON lines."""
    said = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return [str(p["text"]) for p in said if str(p.get("text", "")).startswith("🔁")]


@pytest.mark.parametrize("when", ["before deciding", "between deciding and posting"])
async def test_a_deposed_leader_announces_no_handoff_and_the_next_one_announces_once(
    tmp_path: Path, pg_url: str, pd: FakePagerDuty, clock: FakeClock, when: str
) -> None:
    pd.now = clock.now
    section = pd_section(pd, handoff_channels=["console:oncall"])
    a, b, out = await two_apps(tmp_path, pg_url, clock, pagerduty=section)
    pair = Pair(a, b, out)
    try:
        await first_refresh(a)
        await run_job(a, "pagerduty-refresh")  # the baseline, in order after the start-up one
        assert a.part(Handoffs) is not None and a.part(OnCallRefresher) is not None
        pd.schedules["PIC1"] = ("IC Primary", [("PGRACE", 1), ("PALAN", 2)])
        await run_job(a, "pagerduty-refresh")  # seen once: not yet news
        if when == "before deciding":
            await supersede(a.db)
            assert a.lease.leader  # paused past its lease: it still believes it leads
            await run_job(a, "pagerduty-refresh")  # the second sighting would announce
            assert await a.db.fetchall("SELECT 1 FROM oncall_posts") == []  # nothing decided
        else:
            await a.part(OnCallRefresher).refresh()
            entries = [e for g in a.part(OnCallRefresher).snapshot.entries.values() for e in g]
            await a.part(Handoffs).decide(entries)  # decided while it led: the posts are owed
            assert len(await a.db.fetchall("SELECT 1 FROM oncall_posts")) == 2
            await supersede(a.db)
            await a.part(Handoffs).deliver()  # it wakes up and tries to post
            await run_job(a, "pagerduty-refresh")
            rows = await a.db.fetchall("SELECT sent, claimed_by FROM oncall_posts")
            assert [tuple(r) for r in rows] == [(None, None), (None, None)]  # none claimed
        await a.outbox.flush(5)
        assert handoffs_in(out["a"]) == []
        await pair.handover()
        for _ in range(3):
            await run_job(b, "pagerduty-refresh")
        await b.outbox.flush(5)
        said = handoffs_in(out["b"])
        assert len(said) == 2, said  # the primary and the backup level, once each
        assert sum(t.startswith(ADA_TO_GRACE) for t in said) == 1, said
    finally:
        await b.stop()
        await a.stop()


# -- reminders, topics: a deposed leader, on the real Mattermost connector ---------------------

ONCALL = "oncallchan0000000000000000"


async def test_a_deposed_leader_sends_no_reminder_and_writes_no_topic(
    tmp_path: Path, pg_url: str, pd: FakePagerDuty, server: FakeMattermost, clock: FakeClock
) -> None:
    """The leader's token is superseded while it still believes it leads (paused past its
    lease): its refresh sends no reminder DM and patches no channel header. Leading again
    under a new token, it sends each once."""
    pd.now = clock.now
    pd.users["PALICE"] = FakeUser("PALICE", "Alice Liddell", "alice@example.com")
    pd.shifts["PIC1"] = [("PADA", 1, MON8, MON8 + DAY), ("PGRACE", 1, MON8 + DAY, MON8 + 2 * DAY)]
    pd.shifts["PRS1"] = [("PEDS", 1, MON8, MON8 + DAY), ("PALICE", 1, MON8 + DAY, MON8 + 2 * DAY)]
    server.channels[ONCALL] = {"id": ONCALL, "type": "O", "name": "oncall", "header": ""}
    server.members[ONCALL] = [BOT["id"]]
    config = make_config(
        tmp_path,
        chatopsd={"database": pg_url, "instance": "a", "lease_seconds": LONG_LEASE},
        mattermost={"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0},
        console={"enabled": False},
        pagerduty=pd_section(
            pd,
            remind_before_minutes=[60],
            users={f"mattermost:{ALICE['id']}": "alice@example.com"},
            topic_channels={f"mattermost:{ONCALL}": "IC: {ic}"},
        ),
    )
    app = App(config, clock=clock)
    await app.start()

    def dms() -> list[str]:
        direct = {cid for cid, c in server.channels.items() if c["type"] == "D"}
        return [plain(p["message"]) for p in server.bot_posts() if p["channel_id"] in direct]

    async def lead_again() -> None:
        await app.lease.tick()  # finds its token superseded: steps down
        assert not app.lease.leader
        await app.lease.tick()  # the lease is free: takes it with a new token
        assert app.lease.leader

    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
        await first_refresh(app)
        await run_job(app, "pagerduty-refresh")
        assert len(server.channel_patches) == 1  # the header, written once at start
        clock.advance(19 * 3600 + 15 * 60)  # Tue 07:15: Alice starts at 08:00
        await supersede(app.db)
        assert app.lease.leader  # paused past its lease: it still believes it leads
        await run_job(app, "pagerduty-refresh")
        await run_job(app, "pagerduty-refresh")
        assert dms() == []
        assert await app.db.fetchall("SELECT 1 FROM oncall_reminded") == []
        await lead_again()
        await run_job(app, "pagerduty-refresh")
        await run_job(app, "pagerduty-refresh")
        [dm] = dms()
        assert "You're Payments primary from Tue 08:00" in dm

        clock.advance(45 * 60 + 60)  # Tue 08:01: Grace is the IC now
        await supersede(app.db)
        await run_job(app, "pagerduty-refresh")
        assert len(server.channel_patches) == 1  # no header written by a deposed leader
        await lead_again()
        await run_job(app, "pagerduty-refresh")
        await run_job(app, "pagerduty-refresh")
        assert len(server.channel_patches) == 2
        assert server.channel_patches[-1][1]["header"].startswith("IC: Grace Hopper")
        assert len(dms()) == 1
    finally:
        await app.stop()
