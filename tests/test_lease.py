"""The leader lease on a real PostgreSQL: one leader, clean handover, a dead leader replaced
within the lease, fencing of a superseded leader, and a cut network (a TCP proxy the test
closes): the old leader stops its singleton work before another instance can start it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from chatopsd.features.status.stalking_rules import Stalker
from chatopsd.features.status.store import SqlStalkerStore
from chatopsd.ha.fence import Superseded
from chatopsd.ha.lease import LocalLease, PgLease
from chatopsd.store.postgres import PgDatabase
from tests.tcp_proxy import TcpProxy
from tests.waiting import eventually

LEASE = 3.0  # seconds: short, so the test waits little (nothing here measures speed)


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PgDatabase, PgDatabase]]:
    a, b = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)
    yield a, b
    await a.close()
    await b.close()


def test_sqlite_process_always_leads() -> None:
    lease = LocalLease("solo")
    assert lease.leader and lease.token is None and lease.state().holder == "solo"


async def test_one_leader_then_a_clean_handover(two: tuple[PgDatabase, PgDatabase]) -> None:
    a = PgLease(two[0], lease_seconds=LEASE, instance="a")
    b = PgLease(two[1], lease_seconds=LEASE, instance="b")
    await a.tick()
    assert a.leader and a.token is not None
    await b.tick()
    assert not b.leader and b.state().holder == "a"
    await a.tick()
    assert set(b.state().instances) == {"a", "b"}
    first = a.token
    await a.stop()
    await b.tick()  # no waiting for expiry after a clean handover
    assert b.leader and b.token == first + 1
    await b.stop()


async def test_dead_leader_replaced_within_the_lease_and_fenced_off(
    two: tuple[PgDatabase, PgDatabase],
) -> None:
    a = PgLease(two[0], lease_seconds=LEASE, instance="a")
    b = PgLease(two[1], lease_seconds=LEASE, instance="b")
    await a.tick()
    stale = a.token
    assert stale is not None
    stalkers = SqlStalkerStore(two[0])
    await stalkers.put(Stalker("slack", "C1", "", 30.0, "fp0", "NORMAL", 1.0, 1.0, "ada"))
    # The leader's process is gone (kill -9): its connection drops, PostgreSQL frees the lock.
    a._conn.terminate()

    async def b_takes_over() -> None:
        while not b.leader:
            await b.tick()
            await asyncio.sleep(0.02)

    took = time.monotonic()
    await asyncio.wait_for(b_takes_over(), 10)
    took = time.monotonic() - took
    assert took <= LEASE + b.interval
    assert not a.leader  # a, if it were only paused, has stopped counting itself leader
    assert b.token == stale + 1
    # a paused old leader waking up cannot record (and so cannot post) a stalker change
    with pytest.raises(Superseded):
        await stalkers.mark([("fpX", "CRITICAL", 2.0, ("slack", "C1", ""))], fence=stale)
    await stalkers.mark([("fpB", "DEGRADED", 2.0, ("slack", "C1", ""))], fence=b.token)
    assert [s.fingerprint for s in await stalkers.all()] == ["fpB"]
    await b.stop()


async def test_cut_network_leader_stops_before_another_takes_over(
    pg_url: str, two: tuple[PgDatabase, PgDatabase]
) -> None:
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    via_proxy = pg_url.replace(f":{parts.port}/", f":{proxy.port}/")
    a_db = await PgDatabase.open(via_proxy)
    a = PgLease(a_db, lease_seconds=LEASE, instance="a")
    b = PgLease(two[1], lease_seconds=LEASE, instance="b")
    await a.start()
    await b.start()
    overlap: list[float] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            if a.leader and b.leader:
                overlap.append(time.monotonic())
            await asyncio.sleep(0.005)

    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        assert a.leader and not b.leader
        await eventually(lambda: len(b.state().instances) == 2, timeout=10)
        cut_at = time.monotonic()
        await proxy.close()
        await eventually(lambda: not a.leader, timeout=10)
        await eventually(lambda: b.leader, timeout=10)
        assert overlap == []  # never two leaders at the same moment
        # and a stopped answering commands (Lease.alive: half a lease without a heartbeat),
        # which b takes over only once a's heartbeat is a whole lease old
        assert not a.alive() and b.alive()
        assert time.monotonic() - cut_at <= LEASE + b.interval + 0.5
    finally:
        sampling = False
        await sampler
        await a.stop()
        await b.stop()
        await a_db.close()
        await proxy.close()
