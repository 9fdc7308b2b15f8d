"""The issue-18 stores' contract, on SQLite and on a real PostgreSQL (the twins of migrations
0080-0083): handoff state and owed posts decided atomically under idempotency keys, reminder
keys, and what the topics / user groups were last written with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.core.handoff import Holders, OwedPost, Step
from chatopsd.core.messages import Destination
from chatopsd.store.db import Database
from chatopsd.store.oncall_push import SqliteKeptState, SqliteOnCallPush
from tests.pg_cluster import BACKENDS, open_backend

ADA = Holders("IC primary", ("PADA",), ("Ada",))
GRACE = Holders("IC primary", ("PGRACE",), ("Grace",))
ROOM = Destination("slack", "C1")


@pytest.fixture(params=BACKENDS)
async def push_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_backend(request, tmp_path) as database:
        yield database


async def test_decisions_and_owed_posts(push_db: Database) -> None:
    store = SqliteOnCallPush(push_db)
    assert await store.watched() == {}
    await store.decide([Step("PIC1:primary", ADA, None, 0, None)], [ROOM])
    assert (await store.watched())["PIC1:primary"].announced == ADA
    assert await store.owed() == []  # a baseline owes nothing
    await store.decide([Step("PIC1:primary", ADA, GRACE, 0, None)], [ROOM])
    assert (await store.watched())["PIC1:primary"].pending == GRACE
    announce = Step("PIC1:primary", GRACE, None, 1, "🔁 IC primary: Ada → Grace")
    await store.decide([announce], [ROOM])
    await store.decide([announce], [ROOM])  # the same decision again: the same key, one post
    owed = await store.owed()
    assert owed == [OwedPost("handoff:PIC1:primary:1:slack:C1", ROOM, announce.text or "")]
    await store.sent(owed[0].key, "1700000000.000001")
    assert await store.owed() == []
    watched = (await store.watched())["PIC1:primary"]
    assert watched.announced == GRACE and watched.pending is None and watched.seq == 1


async def test_reminder_keys_and_dms(push_db: Database) -> None:
    store = SqliteOnCallPush(push_db)
    await store.remind(["k60", "k720"], [("k60", "slack", "U0CAROL", "You're on")])
    await store.remind(["k60"], [("k60", "slack", "U0CAROL", "You're on")])  # idempotent
    assert await store.reminded(["k60", "k720", "other"]) == {"k60", "k720"}
    [dm] = await store.owed()
    assert dm == OwedPost("k60:slack:U0CAROL", Destination("slack", "U0CAROL"), "You're on", True)


async def test_kept_state(push_db: Database) -> None:
    kept = SqliteKeptState(push_db)
    assert await kept.written() == {}
    await kept.record("topic:slack:C1", "IC: Ada")
    await kept.record("topic:slack:C1", "IC: Grace")
    await kept.record("usergroup:S0123ABC", "U2")
    assert await kept.written() == {"topic:slack:C1": "IC: Grace", "usergroup:S0123ABC": "U2"}
