"""Teams figures through the fake relay and bot service, with the daemon as its own process.

    .venv/bin/python bench/teams.py [--requests 200] [--burst 1000]

The fake Teams channel signs a Bot Framework token and POSTs "@chatopsd help" to the fake
Relay's sender endpoint; the relay hands it to the daemon's listener over its websocket, the
daemon checks the token, records the claim, answers 200 and then posts the reply through the
fake Bot Connector. Measured from here: the relayed request -> its 200 (p50/p99), and -> the
reply posted at the Connector (p50/p99), one request at a time; the daemon's RSS with Teams
connected (VmRSS, after the requests); then a burst of `--burst` activities sent at once
(64 in flight): how many were answered 200, and the time until every reply was posted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.process import rss_kib, toml  # noqa: E402
from tests.fakes.teams_bot import FakeBotService  # noqa: E402
from tests.fakes.teams_relay import FakeRelay  # noqa: E402
from tests.teams_helpers import raw_section  # noqa: E402

IN_FLIGHT = 64


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def answered(bot: FakeBotService) -> set[str]:
    return {a[1].rsplit("=", 1)[-1] for a in bot.activities if a[0] == "SEND"}


async def wait_answer(bot: FakeBotService, aid: str, timeout: float = 30.0) -> None:
    end = time.perf_counter() + timeout
    while aid not in answered(bot):
        if time.perf_counter() > end:
            raise TimeoutError(f"no reply to {aid}")
        await asyncio.sleep(0.0005)


async def wait_all(bot: FakeBotService, ids: set[str], timeout: float) -> None:
    end = time.perf_counter() + timeout
    while not ids <= answered(bot):
        if time.perf_counter() > end:
            return  # the count printed says how many came
        await asyncio.sleep(0.01)


async def main(requests: int, burst: int) -> None:
    relay, bot = FakeRelay(pong_every=30, timeout=30), FakeBotService()
    await relay.start()
    await bot.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "chatopsd.toml"
        tables = {
            "chatopsd": {"state_db": f"{tmp}/state.db"},
            "ratelimit": {"per_minute": 1e9, "burst": 10**9},
            "teams": raw_section(relay.listen_url, bot.section()),
        }
        cfg.write_text(toml(tables))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPSD_")}
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await relay.wait_for(lambda: relay.listeners, timeout=30)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=IN_FLIGHT)
            ) as http:
                to_200: list[float] = []
                to_reply: list[float] = []
                for i in range(requests + 5):
                    activity = bot.activity("<at>chatopsd</at> help")
                    start = time.perf_counter()
                    status, *_ = await bot.post_activity(relay.endpoint, activity, http=http)
                    acked = time.perf_counter()
                    assert status == 200, status
                    await wait_answer(bot, activity["id"])
                    done = time.perf_counter()
                    if i >= 5:  # the first ones fetch keys and a token
                        to_200.append((acked - start) * 1000)
                        to_reply.append((done - start) * 1000)
                print(
                    f"relayed request -> 200 over {requests}: p50 {statistics.median(to_200):.1f}"
                    f" ms, p99 {pct(to_200, 0.99):.1f} ms"
                )
                print(
                    f"relayed request -> reply posted: p50 {statistics.median(to_reply):.1f} ms,"
                    f" p99 {pct(to_reply, 0.99):.1f} ms"
                )
                print(f"daemon RSS with Teams connected: {rss_kib(proc.pid) / 1024:.1f} MiB")

                activities = [bot.activity("<at>chatopsd</at> help") for _ in range(burst)]
                # signed up front: the channel's RSA signing is not the daemon's time
                tokens = [bot.channel_token() for _ in range(burst)]
                gate = asyncio.Semaphore(IN_FLIGHT)

                async def one(activity: dict[str, Any], token: str) -> int:
                    async with gate:
                        status, *_ = await bot.post_activity(
                            relay.endpoint, activity, token=token, http=http, validate=False
                        )
                        return status

                start = time.perf_counter()
                statuses = await asyncio.gather(
                    *(one(a, t) for a, t in zip(activities, tokens, strict=True))
                )
                all_200 = time.perf_counter() - start
                ids = {a["id"] for a in activities}
                await wait_all(bot, ids, 120.0)
                all_replies = time.perf_counter() - start
                got = len(ids & answered(bot))
                ok = sum(1 for s in statuses if s == 200)
                print(
                    f"burst of {burst}: {ok}/{burst} answered 200 in {all_200:.2f} s; "
                    f"{got}/{burst} replies posted in {all_replies:.2f} s "
                    f"({got / all_replies:.0f}/s); daemon RSS {rss_kib(proc.pid) / 1024:.1f} MiB"
                )
                assert not bot.violations, bot.violations[:3]
        finally:
            proc.terminate()
            await proc.wait()
            await relay.close()
            await bot.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.burst))
