"""Slack figures through the fake: ack latency under a burst, command round trip, and the
time from an abrupt TCP drop to the next answered command.

Run from the repository root: .venv/bin/python -m bench.slack
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from chatopsd.app import App
from chatopsd.config import Config
from chatopsd.core.ports import SystemClock
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def config(db: Path, fake: FakeSlack, ping: float) -> Config:
    return Config.model_validate(
        {
            "chatopsd": {"state_db": str(db)},
            "console": {"enabled": False},
            "slack": {
                "app_token": APP_TOKEN,
                "bot_token": BOT_TOKEN,
                "api_url": fake.api_url,
                "ping_interval_seconds": ping,
            },
            # the bench measures the connector, not the per-user rate limit
            "ratelimit": {"per_minute": 1_000_000, "burst": 1_000_000},
        }
    )


async def main(burst: int = 1000, trips: int = 200, drops: int = 3, ping: float = 3.0) -> None:
    fake = FakeSlack()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        app = App(config(Path(tmp) / "state.db", fake, ping), clock=SystemClock())
        await app.start()
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 10)
        try:
            # 1. ack latency under a burst
            start_posts = len(fake.posts())
            t0 = time.perf_counter()
            ids = [await fake.event(fake.message("!help")) for _ in range(burst)]
            await fake.wait_for(lambda: all(i in fake.ack_times for i in ids), timeout=60)
            acked = time.perf_counter() - t0
            await fake.wait_for(lambda: len(fake.posts()) - start_posts >= burst, timeout=120)
            answered = time.perf_counter() - t0
            lat = [fake.ack_times[i] - fake.sent_times[i] for i in ids]
            print(
                f"burst of {burst} envelopes: ack p50 {pct(lat, 0.5):.1f} ms, "
                f"p99 {pct(lat, 0.99):.1f} ms, max {max(lat) * 1000:.1f} ms "
                f"(all acked in {acked:.2f} s, all answered in {answered:.2f} s)"
            )

            # 2. command round trip, one at a time: envelope in -> chat.postMessage out
            trip: list[float] = []
            for _ in range(trips):
                n = len(fake.posts())
                sent = time.monotonic()
                await fake.event(fake.message("!help"))
                await fake.wait_for(lambda n=n: len(fake.posts()) > n, timeout=10)
                trip.append(fake.call_times("chat.postMessage")[-1] - sent)
            print(
                f"command round trip ({trips} sequential): p50 {pct(trip, 0.5):.1f} ms, "
                f"p99 {pct(trip, 0.99):.1f} ms"
            )

            # 3. abrupt drop -> next answered command (ping_interval_seconds = ping)
            recover: list[float] = []
            for _ in range(drops):
                await asyncio.sleep(0.5)
                n = len(fake.posts())
                fake.drop()
                t = time.monotonic()
                await fake.event(fake.message("!help"))
                await fake.wait_for(lambda n=n: len(fake.posts()) > n, timeout=30)
                recover.append(time.monotonic() - t)
            print(
                f"abrupt drop -> next answered command (ping {ping:g} s, {drops} runs): "
                + ", ".join(f"{r:.2f} s" for r in recover)
            )
        finally:
            await app.stop()
            await fake.stop()


if __name__ == "__main__":
    asyncio.run(main(*(int(a) for a in sys.argv[1:3])))
