"""Benchmark PagerDuty incidents in chat: the cost of one `pagerduty-incidents` poll, and
click → PagerDuty write latency.

    .venv/bin/python bench/pd_sync.py [--incidents 500] [--services 20]

The fake PagerDuty runs in a child process (spec validation off: we measure our side, not
openapi-core). Cards go to the console connector (into memory). Printed: requests, ms and
peak RSS for the first poll (every incident new: decided and posted), for an unchanged poll,
and for a poll where 10 incidents changed; then p50/p99 of a click on Acknowledge through the
whole bus (dedupe, audit, identity, claim, the PUT to PagerDuty answered, the card edit
decided and queued).
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
from chatopsd.core.messages import Actor, Destination, Inbound
from chatopsd.features.pagerduty.cards import IncidentSync
from chatopsd.features.pagerduty.cards_store import SqlIncidentCards
from chatopsd.features.pagerduty.incidents_api import PagerDutyIncidents
from chatopsd.features.pagerduty.oncall_refresher import OnCallRefresher
from tests.conftest import make_config
from tests.fakes.pagerduty import TOKEN, FakePagerDuty, FakeUser


def serve_fake(args: argparse.Namespace, ports: mp.Queue[int], orders: mp.Queue[int]) -> None:  # type: ignore[type-arg]
    """The fake in its own process. `orders` carries "resolve the next n incidents out of
    band" (answered on `ports` with 0 once done); a negative number stops it."""

    async def main() -> None:
        fake = FakePagerDuty(validate=False, page_size_cap=100)
        fake.users["PBOT"] = FakeUser("PBOT", "Bot", "bot@example.com")
        fake.users["PGRACE"] = FakeUser("PGRACE", "Grace Hopper", "grace@example.com")
        fake.schedules["PIC1"] = ("IC", [("PGRACE", 1)])
        for i in range(args.incidents):
            fake.trigger(f"Incident {i}", service_id=f"PSVC{i % args.services}")
        await fake.start()
        ports.put(int(fake.url.rsplit(":", 1)[1]))
        changed = 0
        while (n := await asyncio.to_thread(orders.get)) >= 0:
            for inc in fake.incidents[changed : changed + n]:
                fake.act(inc["id"], "resolved", "PGRACE")
            changed += n
            ports.put(0)
        await fake.close()

    asyncio.run(main())


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def bench(args: argparse.Namespace, port: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chatopsd-bench-"))
    cfg = make_config(
        tmp,
        pagerduty={
            "api_token": TOKEN,
            "api_url": f"http://127.0.0.1:{port}",
            "from_email": "bot@example.com",
            "service_id": "PSVC0",
            "ic_schedules": ["PIC1"],
            "refresh_seconds": 3600,
            "service_ids": [f"PSVC{s}" for s in range(args.services)],
            "incident_channels": ["console:incidents"],
            "incident_poll_seconds": 3600,
            "users": {"console:grace": "grace@example.com"},
        },
        roles={"oncall": ["*"]},
        ratelimit={"per_minute": 1e9, "burst": 1_000_000},
    )
    app = App(cfg, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    try:
        await measure(app, args)
    finally:
        await app.stop()


async def started_jobs(app: App, *names: str) -> None:
    """Wait for the jobs that run at start-up, so they do not count in the figures."""
    for _ in range(3000):  # polled: the scheduler has no event to wait on
        if all(n in app.scheduler.last_ok for n in names):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"start-up jobs {names} did not finish within 30 s")


async def timed_poll(app: App, label: str, sync: IncidentSync | None = None) -> None:
    client = app.part(OnCallRefresher).client
    before = client.requests
    started = time.perf_counter()
    await (sync or app.part(IncidentSync)).poll()
    await app.outbox.flush(60)
    ms = (time.perf_counter() - started) * 1000
    print(
        f"poll, {label}: {client.requests - before} requests, {ms:.0f} ms, "
        f"peak RSS {rss_mib():.1f} MiB"
    )


async def measure(app: App, args: argparse.Namespace) -> None:
    await started_jobs(app, "pagerduty-refresh", "pagerduty-incidents")
    assert app.part(IncidentSync) is not None
    print(f"{args.incidents} open incidents over {args.services} services; RSS {rss_mib():.1f} MiB")
    # The job already ran once at start (the first-poll case is measured by first_poll).
    await timed_poll(app, "unchanged (steady state)")
    args.orders.put(10)
    await asyncio.to_thread(args.ports.get)
    await timed_poll(app, "10 incidents resolved out of band")

    click_ms: list[float] = []
    for i in range(10, min(args.incidents, 10 + args.clicks)):
        event = Inbound(
            "console",
            "ops",
            Actor("grace", "Grace"),
            f"pd ack PINC{i + 1:03d}",
            kind="button",
            event_id=f"click{i}",
        )
        started = time.perf_counter()
        replies = await app.bus.handle(event)
        click_ms.append((time.perf_counter() - started) * 1000)
        assert replies and "acknowledged by Grace Hopper" in replies[0].plain(), replies
    print(
        f"click Acknowledge -> PagerDuty PUT answered -> card edit queued, {len(click_ms)} "
        f"clicks: p50 {statistics.median(click_ms):.2f} ms, p99 {pct(click_ms, 0.99):.2f} ms"
    )


async def first_poll(args: argparse.Namespace, port: int) -> None:
    """The first poll on an empty database: every incident is new, decided and posted.

    Built from the daemon's own parts, with no incident_channels in config so no scheduled
    poll races this one."""
    tmp = Path(tempfile.mkdtemp(prefix="chatopsd-bench-"))
    services = [f"PSVC{s}" for s in range(args.services)]
    cfg = make_config(
        tmp,
        pagerduty={
            "api_token": TOKEN,
            "api_url": f"http://127.0.0.1:{port}",
            "from_email": "bot@example.com",
            "service_id": "PSVC0",
            "ic_schedules": ["PIC1"],
            "refresh_seconds": 3600,
            "service_ids": services,
        },
    )
    app = App(cfg, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    sync = IncidentSync(
        PagerDutyIncidents(app.part(OnCallRefresher).client),
        SqlIncidentCards(app.db),
        app.kv,
        app.outbox,
        app.clock,
        service_ids=services,
        destinations=[Destination("console", "incidents")],
    )
    try:
        await started_jobs(app, "pagerduty-refresh")
        await timed_poll(app, f"first ({args.incidents} new cards posted)", sync)
    finally:
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=400)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    ports: mp.Queue[int] = ctx.Queue()
    orders: mp.Queue[int] = ctx.Queue()
    child = ctx.Process(target=serve_fake, args=(args, ports, orders))
    child.start()
    args.ports, args.orders = ports, orders
    try:
        port = ports.get(timeout=30)
        asyncio.run(first_poll(args, port))
        asyncio.run(bench(args, port))
    finally:
        orders.put(-1)
        child.join(10)


if __name__ == "__main__":
    main()
