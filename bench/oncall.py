"""Benchmark the on-call cache: `!ic` latency from cache, and the cost of one refresh.

    .venv/bin/python bench/oncall.py [--schedules 100] [--users 1000] [--runs 2000]
    .venv/bin/python bench/oncall.py --schedules 50 --lookahead-days 30   # with the lookahead

The refresh job's full cost (the current on-calls, then the lookahead of coming shifts and the
handoff decisions) is printed on its own line.

The fake PagerDuty runs in a child process (spec validation off: we measure our side, not
openapi-core), so the figures are the daemon's own seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from chatopsd.features.oncall.lookahead import LookaheadRefresher
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from tests.conftest import make_config
from tests.fakes.pagerduty import TOKEN, FakePagerDuty, FakeUser, phone


def serve_fake(  # type: ignore[type-arg]
    schedules: int, users: int, days: int, ports: mp.Queue[int], stop: mp.Event
) -> None:
    async def main() -> None:
        fake = FakePagerDuty(validate=False, page_size_cap=100, policies_per_entry=2)
        for i in range(users):
            uid = f"PU{i:05d}"
            fake.users[uid] = FakeUser(
                uid, f"User {i}", f"user{i}@example.com", [phone(f"555 {i:04d}")]
            )
        fake.users["PBOT"] = FakeUser("PBOT", "Bot", "bot@example.com")
        per = max(1, users // schedules)
        for s in range(schedules):
            members = [(f"PU{(s * per + k) % users:05d}", 1 + k % 2) for k in range(per)]
            fake.schedules[f"PS{s:04d}"] = (f"Schedule {s}", members)
            # a daily rotation through the members, from yesterday to past the lookahead
            day0 = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
            fake.shifts[f"PS{s:04d}"] = [
                (
                    members[d % len(members)][0],
                    1,
                    day0 + timedelta(days=d),
                    day0 + timedelta(days=d + 1),
                )
                for d in range(-1, days + 1)
            ]
        await fake.start()
        ports.put(int(fake.url.rsplit(":", 1)[1]))
        await asyncio.to_thread(stop.wait)
        await fake.close()

    asyncio.run(main())


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def bench(args: argparse.Namespace, port: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chatopsd-bench-"))
    ids = [f"PS{s:04d}" for s in range(args.schedules)]
    cfg = make_config(
        tmp,
        pagerduty={
            "api_token": TOKEN,
            "api_url": f"http://127.0.0.1:{port}",
            "from_email": "bot@example.com",
            "service_id": "PSVC1",
            "ic_schedules": ids[:2],
            "responder_schedules": ids[2:],
            "refresh_seconds": 3600,
            "lookahead_days": args.lookahead_days,
            "handoff_channels": ["console:bench"],
        },
        ratelimit={"per_minute": 1e9, "burst": 1_000_000},  # measure !ic, not the limiter
    )
    app = App(cfg, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    try:
        await measure(app, args)
    finally:
        await app.stop()  # an open SQLite connection would hang interpreter exit


async def measure(app: App, args: argparse.Namespace) -> None:
    cache = app.part(OnCallRefresher)
    assert cache is not None
    await cache.refresh()  # waits for the job's first run at start (same lock), warms up
    base_rss = rss_mib()
    stats = await cache.refresh()
    assert stats is not None
    print(
        f"refresh: {args.schedules} schedules, {stats.people} users, {stats.entries} on-call "
        f"rows: {stats.requests} requests, {stats.seconds:.2f} s, "
        f"peak RSS {rss_mib():.1f} MiB (before this refresh {base_rss:.1f} MiB)"
    )

    assert app.part(LookaheadRefresher) is not None
    for _ in range(600):  # the start-up job's lookahead: let it finish (at most 30 s)
        if app.part(LookaheadRefresher).lookahead.as_of is not None:
            break
        await asyncio.sleep(0.05)
    before, started, base_rss = cache.client.requests, time.perf_counter(), rss_mib()
    cpu = time.process_time()
    await cache.refresh_job()  # what the scheduler runs: refresh, lookahead, handoffs
    seconds = time.perf_counter() - started
    assert (
        app.part(LookaheadRefresher) is not None
        and app.part(LookaheadRefresher).lookahead.as_of is not None
    )
    print(
        f"refresh job with lookahead ({args.schedules} schedules, {args.lookahead_days} days, "
        f"{len(app.part(LookaheadRefresher).lookahead.shifts)} shifts) and handoffs: "
        f"{cache.client.requests - before} requests, {seconds * 1000:.0f} ms "
        f"({(time.process_time() - cpu) * 1000:.0f} ms of our CPU), "
        f"peak RSS {rss_mib():.1f} MiB (before {base_rss:.1f} MiB)"
    )

    before, started, cpu = cache.client.requests, time.perf_counter(), time.process_time()
    assert await app.part(LookaheadRefresher).refresh()
    print(
        f"lookahead read alone: {cache.client.requests - before} requests, "
        f"{(time.perf_counter() - started) * 1000:.0f} ms "
        f"({(time.process_time() - cpu) * 1000:.0f} ms of our CPU; the rest is the fake)"
    )

    handler_ms: list[float] = []
    bus_ms: list[float] = []
    for i in range(args.runs):
        started = time.perf_counter()
        roster = await cache.roster("ic")
        handler_ms.append((time.perf_counter() - started) * 1000)
        assert roster.entries
        event = Inbound("console", "bench", Actor("b", "bench"), "!ic", event_id=f"b{i}")
        started = time.perf_counter()
        replies = await app.bus.handle(event)
        bus_ms.append((time.perf_counter() - started) * 1000)
        assert replies and "on call" in (replies[0].title or "")
    print(
        f"!ic from cache, whole bus (dedupe+audit writes included), {args.runs} runs: "
        f"p50 {statistics.median(bus_ms):.3f} ms, p99 {pct(bus_ms, 0.99):.3f} ms"
    )
    print(
        f"!ic cache lookup only: p50 {statistics.median(handler_ms) * 1000:.1f} us, "
        f"p99 {pct(handler_ms, 0.99) * 1000:.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", type=int, default=100)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--lookahead-days", type=int, default=30)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    ports: mp.Queue[int] = ctx.Queue()
    stop = ctx.Event()
    child = ctx.Process(
        target=serve_fake, args=(args.schedules, args.users, args.lookahead_days, ports, stop)
    )
    child.start()
    try:
        asyncio.run(bench(args, ports.get(timeout=30)))
    finally:
        stop.set()
        child.join(10)


if __name__ == "__main__":
    main()
