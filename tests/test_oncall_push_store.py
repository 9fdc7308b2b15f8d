"""The issue-18 stores' contract, on SQLite and on a real PostgreSQL (the twins of migrations
0080-0083): handoff state and owed posts decided atomically under idempotency keys, reminder
keys, and what the topics / user groups were last written with; and every
singleton write fenced by the lease's token, every post claimed before it is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.core.messages import Destination
from chatopsd.features.oncall.handoff_rules import Holders, OwedPost, Step
from chatopsd.features.oncall.store import SqlKeptState, SqlOnCallPosts
from chatopsd.ha.claims import CLAIM_STALE_SECONDS
from chatopsd.ha.fence import Superseded
from chatopsd.store.db import Database
from tests.pg_cluster import BACKENDS, open_backend

ADA = Holders("IC primary", ("PADA",), ("Ada",))
GRACE = Holders("IC primary", ("PGRACE",), ("Grace",))
ROOM = Destination("slack", "C1")


@pytest.fixture(params=BACKENDS)
async def push_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_backend(request, tmp_path) as database:
        yield database


async def supersede(db: Database) -> int:
    """What a takeover does to the lease row: a newer token. Returns it."""
    await db.write("UPDATE lease SET token = token + 1, holder = NULL WHERE id = 1")
    row = await db.fetchone("SELECT token FROM lease WHERE id = 1")
    assert row is not None
    return int(row[0])


async def token(db: Database) -> int:
    row = await db.fetchone("SELECT token FROM lease WHERE id = 1")
    assert row is not None
    return int(row[0])


async def test_decisions_and_owed_posts(push_db: Database) -> None:
    store = SqlOnCallPosts(push_db)
    t = await token(push_db)  # written as the leader
    assert await store.watched() == {}
    await store.decide([Step("PIC1:primary", ADA, None, 0, None)], [ROOM], fence=t)
    assert (await store.watched())["PIC1:primary"].announced == ADA
    assert await store.owed() == []  # a baseline owes nothing
    await store.decide([Step("PIC1:primary", ADA, GRACE, 0, None)], [ROOM], fence=t)
    assert (await store.watched())["PIC1:primary"].pending == GRACE
    announce = Step("PIC1:primary", GRACE, None, 1, "🔁 IC primary: Ada → Grace")
    await store.decide([announce], [ROOM], fence=t)
    await store.decide([announce], [ROOM], fence=t)  # the same decision again: one post
    owed = await store.owed()
    assert owed == [OwedPost("handoff:PIC1:primary:1:slack:C1", ROOM, announce.text or "")]
    await store.sent(owed[0].key, "1700000000.000001")
    assert await store.owed() == []
    watched = (await store.watched())["PIC1:primary"]
    assert watched.announced == GRACE and watched.pending is None and watched.seq == 1


async def test_reminder_keys_and_dms(push_db: Database) -> None:
    store = SqlOnCallPosts(push_db)
    t = await token(push_db)
    await store.remind(["k60", "k720"], [("k60", "slack", "U0CAROL", "You're on")], fence=t)
    await store.remind(["k60"], [("k60", "slack", "U0CAROL", "You're on")], fence=t)  # idempotent
    assert await store.reminded(["k60", "k720", "other"]) == {"k60", "k720"}
    [dm] = await store.owed()
    assert dm == OwedPost("k60:slack:U0CAROL", Destination("slack", "U0CAROL"), "You're on", True)


async def test_kept_state(push_db: Database) -> None:
    kept = SqlKeptState(push_db)
    t = await token(push_db)
    assert await kept.written() == {}
    await kept.record("topic:slack:C1", "IC: Ada", fence=t)
    await kept.record("topic:slack:C1", "IC: Grace", fence=t)
    await kept.record("usergroup:S0123ABC", "U2", fence=t)
    assert await kept.written() == {"topic:slack:C1": "IC: Grace", "usergroup:S0123ABC": "U2"}


# -- several instances: fenced singleton writes, claimed posts ------------------------------

ANNOUNCE = Step("PIC1:primary", GRACE, None, 1, "🔁 IC primary: Ada → Grace")


async def test_a_deposed_leader_decides_reminds_and_claims_nothing(push_db: Database) -> None:
    store = SqlOnCallPosts(push_db)
    old = await supersede(push_db)
    new = await supersede(push_db)
    with pytest.raises(Superseded):
        await store.decide([ANNOUNCE], [ROOM], fence=old)
    with pytest.raises(Superseded):
        await store.remind(["k60"], [("k60", "slack", "U0CAROL", "hi")], fence=old)
    assert await store.watched() == {} and await store.owed() == []
    assert await store.reminded(["k60"]) == set()
    if push_db.shared:  # no token at all: this instance does not lead
        with pytest.raises(Superseded):
            await store.decide([ANNOUNCE], [ROOM])
        with pytest.raises(Superseded):
            await store.remind(["k60"], [("k60", "slack", "U0CAROL", "hi")])
        assert await store.owed() == []
    await store.decide([ANNOUNCE], [ROOM], fence=new)
    await store.remind(["k60"], [("k60", "slack", "U0CAROL", "hi")], fence=new)
    post, dm = await store.owed()
    with pytest.raises(Superseded):  # decided, but not the old leader's to send
        await store.claim(post, fence=old)
    with pytest.raises(Superseded):
        await store.claim(dm, fence=old)
    claim = await store.claim(post, fence=new)
    assert claim is not None
    await store.sent(post.key, "m1")
    assert [o.key for o in await store.owed()] == [dm.key]
    if push_db.shared:  # sent: nobody claims it again (one process: it is no longer owed)
        assert await store.claim(post, fence=new) is None


async def test_a_post_is_sent_by_one_instance_at_a_time(push_db: Database) -> None:
    store = SqlOnCallPosts(push_db)
    t = await token(push_db)
    await store.decide([ANNOUNCE], [ROOM], fence=t)
    [post] = await store.owed()
    first = await store.claim(post, fence=t, now=1000.0)
    assert first is not None
    second = await store.claim(post, fence=t, now=1001.0)
    if not push_db.shared:
        # one process, one delivery at a time: only the fence matters
        assert second is not None
        return
    assert second is None  # being sent by someone else
    await store.release(post.key, "not-mine")  # only the maker frees a claim
    assert await store.claim(post, fence=t, now=1002.0) is None
    await store.release(post.key, first)  # the send failed: owed again
    third = await store.claim(post, fence=t, now=1003.0)
    assert third is not None
    # its instance died: a stale claim is taken over, and a newer leader's at once
    assert await store.claim(post, fence=t, now=1003.0 + CLAIM_STALE_SECONDS - 1) is None
    assert await store.claim(post, fence=t, now=1004.0 + CLAIM_STALE_SECONDS) is not None
    newer = await supersede(push_db)
    assert await store.claim(post, fence=newer, now=2000.0) is not None
    await store.sent(post.key, "m1")
    assert await store.owed() == []
    assert await store.claim(post, fence=newer, now=2001.0) is None


async def test_kept_true_writes_are_fenced(push_db: Database) -> None:
    kept = SqlKeptState(push_db)
    old = await supersede(push_db)
    assert await kept.holds(old)
    new = await supersede(push_db)
    assert not await kept.holds(old)  # checked before each topic / user group write
    assert await kept.holds(new)
    with pytest.raises(Superseded):
        await kept.record("topic:slack:C1", "IC: Ada", fence=old)
    assert await kept.written() == {}
    if push_db.shared:
        assert not await kept.holds(None)
        with pytest.raises(Superseded):
            await kept.record("topic:slack:C1", "IC: Ada")
    else:
        assert await kept.holds(None)  # the only process
    await kept.record("topic:slack:C1", "IC: Grace", fence=new)
    await kept.forget("topic:slack:C1")  # a write went out unrecorded: written again next
    assert await kept.written() == {}
