"""Benchmark the on-call cache: `!ic` latency from cache, and the cost of one refresh.

    .venv/bin/python bench/oncall.py [--schedules 100] [--users 1000] [--runs 2000]

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from tests.conftest import make_config
from tests.fakes.pagerduty import TOKEN, FakePagerDuty, FakeUser, phone


def serve_fake(schedules: int, users: int, ports: mp.Queue[int], stop: mp.Event) -> None:  # type: ignore[type-arg]
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
    cache = app.oncall_cache
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
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    ports: mp.Queue[int] = ctx.Queue()
    stop = ctx.Event()
    child = ctx.Process(target=serve_fake, args=(args.schedules, args.users, ports, stop))
    child.start()
    try:
        asyncio.run(bench(args, ports.get(timeout=30)))
    finally:
        stop.set()
        child.join(10)


if __name__ == "__main__":
    main()
