"""Benchmark: high availability on PostgreSQL (docs/ha.md).

Prints: command latency p50/p99 through the full bus (dedupe claim, authorize, durable audit)
on SQLite and on PostgreSQL; claim throughput of two instances claiming the same events
(each exactly once); failover time, from the leader's death (its lock connection gone, its
loop stopped: what kill -9 does) to the survivor holding the lease, median of 5.
Starts a private PostgreSQL 15 cluster (as the tests do, but with fsync on), torn down at
the end.
Run: .venv/bin/python bench/ha.py [--lease 10]   (a benchmark: figures vary by machine)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatopsd.app import App, Io  # noqa: E402
from chatopsd.config import Config  # noqa: E402
from chatopsd.core.messages import Actor, Inbound  # noqa: E402
from chatopsd.core.ports import SystemClock  # noqa: E402
from chatopsd.store.events import SqlEventLedger  # noqa: E402
from chatopsd.store.lease import PgLease  # noqa: E402
from chatopsd.store.postgres import PgDatabase  # noqa: E402
from tests.pg_cluster import BIN, SUPERUSER, Cluster, start_cluster, stop_cluster  # noqa: E402

N = 3000


def _pct(samples: list[float], q: float) -> float:
    return sorted(samples)[int(len(samples) * q)] * 1e3


async def latency(label: str, raw: dict[str, object]) -> None:
    app = App(Config.model_validate(raw), io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    try:
        samples = []
        for i in range(N):
            event = Inbound("console", "bench", Actor(f"u{i % 50}"), "!help", event_id=f"l{i}")
            start = time.perf_counter()
            await app.bus.handle(event)
            samples.append(time.perf_counter() - start)
        await app.outbox.flush(60)
        print(
            f"!help on {label:10}  p50 {_pct(samples, 0.5):.3f} ms  "
            f"p99 {_pct(samples, 0.99):.3f} ms  ({N:,} commands, one at a time)"
        )
    finally:
        await app.stop()


async def claims(url: str) -> None:
    a, b = await PgDatabase.open(url), await PgDatabase.open(url)
    try:
        la, lb = SqlEventLedger(a, SystemClock()), SqlEventLedger(b, SystemClock())
        ids = [f"c{i}" for i in range(N * 3)]
        sems = {id(la): asyncio.Semaphore(32), id(lb): asyncio.Semaphore(32)}

        async def one(ledger: SqlEventLedger, event_id: str) -> bool:
            async with sems[id(ledger)]:  # each instance its own concurrency
                return await ledger.claim("slack", event_id)

        start = time.perf_counter()
        won = await asyncio.gather(*(one(la, e) for e in ids), *(one(lb, e) for e in ids))
        elapsed = time.perf_counter() - start
        assert sum(won) == len(ids), "every event claimed exactly once"
        print(
            f"claims, two instances on one PostgreSQL: {2 * len(ids) / elapsed:,.0f} claims/s "
            f"({len(ids):,} events each offered to both; each won exactly once, "
            f"{sum(won[: len(ids)]):,} by the first)"
        )
    finally:
        await a.close()
        await b.close()


async def failover(url: str, lease_seconds: float, runs: int = 5) -> None:
    a_db, b_db = await PgDatabase.open(url), await PgDatabase.open(url)
    times = []
    try:
        for run in range(runs):
            a = PgLease(a_db, lease_seconds=lease_seconds, instance=f"a{run}")
            b = PgLease(b_db, lease_seconds=lease_seconds, instance=f"b{run}")
            await a.start()
            await b.start()
            assert a.leader and not b.leader
            # kill -9 of the leader: its loop stops and its connection is gone
            assert a._task is not None
            a._task.cancel()
            a._conn.terminate()
            killed = time.perf_counter()
            while not b.leader:  # noqa: ASYNC110 (polling the lease's own clock check)
                await asyncio.sleep(0.005)
            times.append(time.perf_counter() - killed)
            await asyncio.wait_for(b.stop(), 30)
    finally:
        await a_db.close()
        await b_db.close()
    print(
        f"failover (leader killed -> survivor holds the lease), lease_seconds={lease_seconds:g}: "
        f"median {statistics.median(times):.2f} s of {runs} "
        f"(min {min(times):.2f}, max {max(times):.2f}; bound 0.75 x lease + one renewal "
        f"interval = {0.75 * lease_seconds + lease_seconds / 5:.2f} s)"
    )


async def run_all(cluster: Cluster, lease_seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = {"ratelimit": {"per_minute": 1e9, "burst": 1_000_000}}
        await latency("SQLite", {"chatopsd": {"state_db": f"{tmp}/bench.db"}, **base})
        await latency(
            "PostgreSQL",
            {"chatopsd": {"state_db": f"{tmp}/pg.db", "database": cluster.url("lat")}, **base},
        )
    await claims(cluster.url("claims"))
    await failover(cluster.url("lease"), lease_seconds)


def main(lease_seconds: float) -> None:
    if not (BIN / "initdb").exists():
        print(f"PostgreSQL 15 is not installed ({BIN}): apt-get install postgresql")
        return
    cluster = start_cluster(fsync=True)
    try:
        where = ["-h", cluster.host, "-p", str(cluster.port), "-U", SUPERUSER]
        for name in ("lat", "claims", "lease"):
            subprocess.run([str(BIN / "createdb"), *where, name], check=True)
        uvloop.run(run_all(cluster, lease_seconds))
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lease", type=float, default=10.0, help="lease_seconds (default 10)")
    main(parser.parse_args().lease)
