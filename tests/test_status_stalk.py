"""`!status` and stalking through the real App, bus and outbox, against a fake HTTP source."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatopsd.core.messages import Destination
from chatopsd.features.status.stalkers import Stalkers
from chatopsd.features.status.stalking_rules import Stalker
from tests.conftest import FakeClock
from tests.fakes.monitoring import FakeMonitoring
from tests.fixtures.monitoring import fake  # noqa: F401 (fixtures)
from tests.status_helpers import posts, say, status_app

POLL = 30.0


@pytest.fixture
async def app_out(tmp_path: Path, clock: FakeClock, fake: FakeMonitoring):
    source = {
        "kind": "http",
        "name": "statuspage",
        "url": fake.url + "/api/v2/status.json",
        "field": "status.indicator",
        "timeout_seconds": 5,
    }
    app, out = await status_app(tmp_path, clock, [source], stalk_seconds=POLL, unknown_after=2)
    yield app, out
    await app.stop()


def _hits(fake: FakeMonitoring) -> int:
    return fake.hits["/api/v2/status.json"]


async def test_status_shows_verdict_alerts_and_problems(app_out, fake: FakeMonitoring) -> None:
    app, _ = app_out
    [reply] = await say(app, "!status")
    assert reply.title == "✅ Status: NORMAL"
    fake.doc = {"status": {"indicator": "major"}}
    [reply] = await say(app, "!status")
    assert reply.title == "🔥 Status: CRITICAL"
    assert "CRITICAL statuspage: status.indicator = major" in reply.text
    fake.mode = "500"
    [reply] = await say(app, "!status")
    assert reply.title == "❓ Status: UNKNOWN"
    assert "⚠ cannot check statuspage: HTTP 500 from" in reply.text


async def test_stalk_posts_only_on_change(app_out, fake: FakeMonitoring, clock: FakeClock) -> None:
    app, out = app_out
    [reply] = await say(app, "!status stalk")
    assert "Stalking: I check every 30 s" in reply.text
    assert await posts(app, out) == []  # the answer itself is a reply, not a stalker post

    for _ in range(3):  # nothing changed: nothing posted
        clock.advance(POLL)
        result = await app.part(Stalkers).poll()
        assert result.read and result.posted == 0
    assert await posts(app, out) == []

    fake.doc = {"status": {"indicator": "minor"}}
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 1
    [post] = await posts(app, out)
    assert post["channel"] == "ops"
    assert post["text"].startswith("⚠️ Status changed: DEGRADED (was NORMAL)")

    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 0  # still degraded: quiet
    fake.doc = {"status": {"indicator": "none"}}
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 1
    [post] = await posts(app, out)
    assert post["text"].startswith("✅ Status changed: NORMAL (was DEGRADED)")


async def test_unknown_after_n_failures_counts_as_change(
    app_out, fake: FakeMonitoring, clock: FakeClock
) -> None:
    app, out = app_out
    await say(app, "!status stalk")
    clock.advance(POLL)
    await app.part(Stalkers).poll()  # a good reading to hold
    fake.mode = "500"
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 0  # one failure: held, not yet a change
    assert await posts(app, out) == []
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 1  # second failure in a row: UNKNOWN
    [post] = await posts(app, out)
    assert post["text"].startswith("❓ Status changed: UNKNOWN (was NORMAL)")
    assert "cannot check statuspage: HTTP 500" in post["text"]
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 0  # still down: said once
    fake.mode = "ok"
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 1
    assert (await posts(app, out))[0]["text"].startswith("✅ Status changed: NORMAL")


async def test_unstalk_and_stalkers(app_out, fake: FakeMonitoring, clock: FakeClock) -> None:
    app, out = app_out
    await say(app, "!status stalk")
    await say(app, "!status stalk 5m", channel="war-room", thread="T1")
    [listing] = await say(app, "!status stalkers")
    assert listing.title == "2 stalking the status"
    assert "console:ops: every 30 s, last told NORMAL, by ada" in listing.text
    assert "console:war-room (thread T1): every 5 min" in listing.text

    [bye] = await say(app, "!status unstalk")
    assert bye.text == "Stopped stalking the status here."
    [again] = await say(app, "!status unstalk")
    assert again.text == "this channel is not stalking the status"
    [other] = await say(app, "!status unstalk", channel="war-room", thread="T2")
    assert other.text == "this thread is not stalking the status"  # T1's stays

    fake.doc = {"status": {"indicator": "major"}}
    clock.advance(300)
    assert (await app.part(Stalkers).poll()).posted == 1
    [post] = await posts(app, out)
    assert post["channel"] == "war-room"
    rows = await app.db.fetchall("SELECT channel, thread FROM stalkers")
    assert [tuple(r) for r in rows] == [("war-room", "T1")]


async def test_stalk_interval_is_validated(app_out) -> None:
    app, _ = app_out
    [r] = await say(app, "!status stalk 5s")
    assert r.text == "the shortest interval is 30 s (status.stalk_seconds)"
    [r] = await say(app, "!status stalk soon")
    assert r.text.startswith("interval must look like 30s, 5m or 1h (got 'soon')")
    [r] = await say(app, "!status stalk 2d")
    assert r.text.startswith("interval must look like")
    [r] = await say(app, "!status stalk 25h")
    assert r.text == "the longest interval is 24h"


async def test_interval_coalesces_changes(app_out, fake: FakeMonitoring, clock: FakeClock) -> None:
    app, out = app_out
    await say(app, "!status stalk 2m")
    fake.doc = {"status": {"indicator": "minor"}}
    clock.advance(60)
    assert (await app.part(Stalkers).poll()).posted == 0  # changed, but told 60 s ago
    fake.doc = {"status": {"indicator": "major"}}
    clock.advance(60)
    assert (await app.part(Stalkers).poll()).posted == 1  # one post for both changes
    [post] = await posts(app, out)
    assert post["text"].startswith("🔥 Status changed: CRITICAL (was NORMAL)")


async def test_no_stalkers_no_reads(app_out, fake: FakeMonitoring, clock: FakeClock) -> None:
    app, _ = app_out
    before = _hits(fake)
    clock.advance(POLL)
    assert not (await app.part(Stalkers).poll()).read
    assert _hits(fake) == before


async def test_thousand_stalkers_cost_one_poll(
    app_out, fake: FakeMonitoring, clock: FakeClock
) -> None:
    app, out = app_out
    replies = await asyncio.gather(
        *(say(app, "!status stalk", channel=f"c{i}", actor=f"u{i}") for i in range(1000))
    )
    assert {r[0].title for r in replies} == {"✅ Status: NORMAL"}
    assert _hits(fake) < 1000  # a burst of commands shares reads
    assert len(app.part(Stalkers).stalkers) == 1000
    await posts(app, out)

    before = _hits(fake)
    for n in range(1, 4):
        clock.advance(POLL)
        assert (await app.part(Stalkers).poll()).posted == 0
        assert _hits(fake) == before + n  # one read per interval, whatever the stalkers
    fake.doc = {"status": {"indicator": "major"}}
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 1000
    assert _hits(fake) == before + 4
    sent = await posts(app, out)
    assert len(sent) == 1000
    assert {p["channel"] for p in sent} == {f"c{i}" for i in range(1000)}
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 0
    assert _hits(fake) == before + 5
    rows = await app.db.fetchall("SELECT COUNT(DISTINCT fingerprint) FROM stalkers")
    assert rows[0][0] == 1


async def test_undelivered_post_is_retried(app_out, fake: FakeMonitoring, clock: FakeClock) -> None:
    """A stalker on a platform with no connector gets nothing; it is retried, not forgotten."""
    app, out = app_out
    await say(app, "!status stalk")
    now = clock.now().timestamp()
    ghost = Stalker("nowhere", "x", "", POLL, "", "NORMAL", now, now, "test")
    await app.part(Stalkers).store.put(ghost)
    app.part(Stalkers).stalkers.put(ghost)
    fake.doc = {"status": {"indicator": "minor"}}
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 2
    assert len(await posts(app, out)) == 1
    row = await app.db.fetchone("SELECT fingerprint FROM stalkers WHERE platform = 'nowhere'")
    assert row is not None and row[0] == ""  # persisted as "not told", for a restart too
    for _ in range(3):
        clock.advance(POLL)
        assert (await app.part(Stalkers).poll()).posted == 1  # the undelivered one, again
        await app.part(Stalkers).wait_posted()
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 0  # gave up until the next change
    fake.doc = {"status": {"indicator": "major"}}
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 2  # a new change: tried again
    await app.part(Stalkers).wait_posted()
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 1
    await app.part(Stalkers).wait_posted()
    assert Destination("nowhere", "x") == ghost.destination
    row = await app.db.fetchone("SELECT fingerprint FROM stalkers WHERE platform = 'nowhere'")
    assert row is not None and row[0] == ""  # still undelivered, so still "not told"


async def test_restart_resumes_without_duplicate(
    tmp_path: Path, clock: FakeClock, fake: FakeMonitoring
) -> None:
    source = {"kind": "http", "name": "sp", "url": fake.url + "/s", "field": "status.indicator"}
    app, _ = await status_app(tmp_path, clock, [source], stalk_seconds=POLL)
    await say(app, "!status stalk")
    fake.doc = {"status": {"indicator": "minor"}}
    clock.advance(POLL)
    assert (await app.part(Stalkers).poll()).posted == 1
    await app.stop()

    app2, out2 = await status_app(tmp_path, clock, [source], stalk_seconds=POLL)
    try:
        assert len(app2.part(Stalkers).stalkers) == 1
        clock.advance(POLL)
        assert (await app2.part(Stalkers).poll()).posted == 0  # already told DEGRADED
        fake.doc = {"status": {"indicator": "none"}}
        clock.advance(POLL)
        assert (await app2.part(Stalkers).poll()).posted == 1
        assert (await posts(app2, out2))[0]["text"].startswith("✅ Status changed: NORMAL")
    finally:
        await app2.stop()
