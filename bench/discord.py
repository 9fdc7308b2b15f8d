"""Discord connector figures: command round trip through the fake, and RSS vs guild size.

    .venv/bin/python bench/discord.py [--trips 300]

Round trip: `!help` dispatched by the fake gateway -> reply POSTed to the fake REST, through
the real App and discord.py (fake and App in one process). RSS: the App runs in its own process
against a fake (in another process) serving an empty guild, then a guild with 50,000 members
and 500 channels; the figure is the App process's VmRSS once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The script's own folder comes first on sys.path, and this file would shadow discord.py.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from chatopsd.app import App, Io  # noqa: E402
from chatopsd.config import Config  # noqa: E402
from tests.fakes.discord import GUILD_ID, TOKEN, FakeDiscord  # noqa: E402


def config(tmp: str, api_url: str, gateway_url: str) -> Config:
    return Config.model_validate(
        {
            "chatopsd": {"state_db": f"{tmp}/state.db"},
            "console": {"enabled": False},
            "ratelimit": {"per_minute": 1e9, "burst": 1000000},
            "discord": {
                "token": TOKEN,
                "api_url": api_url,
                "gateway_url": gateway_url,
                "guild_ids": [GUILD_ID],
                "guild_ready_timeout": 0.2,
            },
        }
    )


async def round_trips(trips: int) -> None:
    fake = FakeDiscord()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        app = App(
            config(tmp, fake.api_url, fake.gateway_url), io=Io(io.StringIO(""), io.StringIO())
        )
        await app.start()
        await app.supervisors[0].ready_event.wait()
        await asyncio.sleep(0.3)
        while not fake.posted.empty():
            fake.posted.get_nowait()
        times = []
        for _ in range(trips):
            start = time.perf_counter()
            await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))
            await fake.next_post()
            times.append((time.perf_counter() - start) * 1000)
        await app.stop()
    await fake.stop()
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"round trip (!help, {trips} trips): "
        f"p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms"
    )


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def serve_fake(members: int, channels: int) -> None:
    fake = FakeDiscord(members=members, channels=channels)
    await fake.start()
    print(fake.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fake.stop()


async def measure_app(port: int) -> None:
    base = f"http://127.0.0.1:{port}/api/v10"
    with tempfile.TemporaryDirectory() as tmp:
        app = App(
            config(tmp, base, f"ws://127.0.0.1:{port}/gateway"),
            io=Io(io.StringIO(""), io.StringIO()),
        )
        await app.start()
        await app.supervisors[0].ready_event.wait()
        await asyncio.sleep(1.0)
        gc.collect()
        print(rss_kib(), flush=True)
        await app.stop()


def rss_for(members: int, channels: int) -> int:
    me = [sys.executable, __file__]
    fake = subprocess.Popen(
        [*me, "--fake", str(members), str(channels)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None and fake.stdin is not None
    port = fake.stdout.readline().strip()
    out = subprocess.run(
        [*me, "--app", port], capture_output=True, text=True, timeout=120, check=True
    )
    fake.stdin.close()
    fake.wait(timeout=30)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trips", type=int, default=300)
    parser.add_argument("--fake", nargs=2, type=int)
    parser.add_argument("--app", type=int)
    args = parser.parse_args()
    if args.fake:
        asyncio.run(serve_fake(*args.fake))
        return
    if args.app:
        asyncio.run(measure_app(args.app))
        return
    asyncio.run(round_trips(args.trips))
    empty = rss_for(0, 1)
    big = rss_for(50_000, 500)
    print(f"RSS ready, empty guild: {empty / 1024:.1f} MiB")
    print(f"RSS ready, 50,000 members / 500 channels: {big / 1024:.1f} MiB")
    print(f"difference: {(big - empty) / 1024:.1f} MiB (target: within 5 MiB)")


if __name__ == "__main__":
    main()
