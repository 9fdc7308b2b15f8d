"""Benchmark: high availability on PostgreSQL (docs/ha.md).

Prints: command latency p50/p99 through the full bus (dedupe claim, authorize, durable audit)
on SQLite and on PostgreSQL; claim throughput of two instances claiming the same events
(each exactly once); failover time, from the leader's death (its lock connection gone, its
loop stopped: what kill -9 does) to the survivor holding the lease, median of 5; then 5
real failovers (--e2e 5): two chatopsd processes on the fake Slack, Discord and Mattermost
(tests/test_ha.py's set-up, lease_seconds 2), 150 commands over the three, the leader
`kill -9`ed at the 75th: the failover time to the first singleton job on the survivor (the
status stalker's post) and how many commands were lost or answered twice.
Starts a private PostgreSQL 15 cluster (as the tests do, but with fsync on), torn down at
the end.
Run: .venv/bin/python bench/ha.py [--lease 10] [--e2e 5] [--latency-only]
(figures vary by machine)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
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
from chatopsd.ha.lease import PgLease  # noqa: E402
from chatopsd.store.events import SqlEventLedger  # noqa: E402
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


async def e2e_run(url: str) -> tuple[float, int, int, int]:
    """One real failover: (seconds to the survivor's first stalker post, commands sent,
    lost, answered twice)."""
    from tests.fixtures.pagerduty import fake_pd
    from tests.test_ha import PLATFORMS, Instances, answers_settle, lease_holder, open_chat
    from tests.waiting import eventually

    pd = fake_pd()
    pd.validate = False
    await pd.start()
    try:
        async with open_chat() as chat:
            with tempfile.TemporaryDirectory() as tmp:
                inst = Instances(Path(tmp), url, chat, pd)
                try:
                    first = inst.start("one")
                    await eventually(lambda: chat.connected(1), timeout=60)
                    await eventually(lambda: lease_holder(url), timeout=20)
                    inst.start("two")
                    await eventually(lambda: chat.connected(2), timeout=60)
                    await eventually(lambda: chat.discord_ready() >= 2, timeout=20)
                    stalk = await chat.command("mattermost", "!status stalk", 9000)
                    await eventually(lambda: chat.answers()[stalk] >= 1, timeout=20)
                    keys = []
                    killed = 0.0
                    for n in range(150):
                        if n == 75:
                            first.send_signal(signal.SIGKILL)
                            killed = time.monotonic()
                            inst.status_file.write_text("critical\n")
                        keys.append(await chat.command(PLATFORMS[n % 3], "!help ic", n))
                        if n % 30 == 29:
                            await asyncio.sleep(0.05)
                    await eventually(lambda: chat.stalker_changes()["mattermost"] >= 1, timeout=60)
                    took = time.monotonic() - killed
                    await answers_settle(chat, keys)
                    counts = chat.answers()
                    lost = sum(1 for k in keys if counts[k] == 0)
                    return took, len(keys), lost, sum(1 for k in keys if counts[k] > 1)
                finally:
                    inst.stop_all()
    finally:
        await pd.close()


async def e2e(cluster: Cluster, runs: int) -> None:
    """Real processes, real kill -9: lost and doubled commands across `runs` failovers."""
    from tests.test_ha import LEASE

    results = [await e2e_run(cluster.url(f"e2e{run}")) for run in range(runs)]
    times = [r[0] for r in results]
    print(
        f"kill -9 of the leader, {runs} runs, two processes on Slack+Discord+Mattermost, "
        f"lease_seconds={LEASE:g}: first singleton job (stalker post) on the survivor after "
        f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}); "
        f"commands lost {sum(r[2] for r in results)}, answered twice "
        f"{sum(r[3] for r in results)} (of {sum(r[1] for r in results)})"
    )


async def run_all(
    cluster: Cluster, lease_seconds: float, e2e_runs: int, latency_only: bool = False
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = {"ratelimit": {"per_minute": 1e9, "burst": 1_000_000}}
        await latency("SQLite", {"chatopsd": {"state_db": f"{tmp}/bench.db"}, **base})
        await latency(
            "PostgreSQL",
            {"chatopsd": {"state_db": f"{tmp}/pg.db", "database": cluster.url("lat")}, **base},
        )
    if latency_only:
        return
    await claims(cluster.url("claims"))
    await failover(cluster.url("lease"), lease_seconds)
    if e2e_runs:
        await e2e(cluster, e2e_runs)


def main(lease_seconds: float, e2e_runs: int, latency_only: bool = False) -> None:
    if not (BIN / "initdb").exists():
        print(f"PostgreSQL 15 is not installed ({BIN}): apt-get install postgresql")
        return
    cluster = start_cluster(fsync=True)
    try:
        where = ["-h", cluster.host, "-p", str(cluster.port), "-U", SUPERUSER]
        for name in ("lat", "claims", "lease", *(f"e2e{run}" for run in range(e2e_runs))):
            subprocess.run([str(BIN / "createdb"), *where, name], check=True)
        uvloop.run(run_all(cluster, lease_seconds, e2e_runs, latency_only))
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lease", type=float, default=10.0, help="lease_seconds (default 10)")
    parser.add_argument("--e2e", type=int, default=5, help="real kill -9 failovers (0: none)")
    parser.add_argument(
        "--latency-only", action="store_true", help="only the SQLite / PostgreSQL latencies"
    )
    args = parser.parse_args()
    main(args.lease, 0 if args.latency_only else args.e2e, args.latency_only)
