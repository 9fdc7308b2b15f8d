"""Mattermost figures through the fake server: command round-trip, and cost of an outage.

    .venv/bin/python bench/mattermost.py [--commands 200] [--outage 60]

Round-trip: a user post "!help" on the fake -> websocket -> App -> REST reply in the thread.
Outage: the fake stops and a stand-in answers every request on its port with HTTP 502 (a
reverse proxy in front of a dead Mattermost), counting connection attempts; CPU seconds are
this process's (daemon and stand-in together, so an over-estimate) and log bytes are what the
daemon's loggers formatted. Targets: <= ~1 attempt/s after the first few, < 1% CPU, < 10 KB of
log per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatopsd.app import App
from chatopsd.config import Config
from tests.fakes.mattermost import TOKEN, FakeMattermost


class ByteCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.bytes += len(self.format(record)) + 1


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(commands: int, outage: float) -> None:
    fake = FakeMattermost()
    await fake.start()
    port = fake.port
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.model_validate(
            {
                "chatopsd": {"state_db": f"{tmp}/state.db"},
                "console": {"enabled": False},
                "mattermost": {"url": fake.url, "token": TOKEN},
                "ratelimit": {"per_minute": 1e9, "burst": 10**9},
            }
        )
        app = App(config)
        await app.start()
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 10)

        times: list[float] = []
        for _ in range(commands):
            start = time.perf_counter()
            post = await fake.user_post("!help")
            while not any(p["root_id"] == post["id"] for p in fake.bot_posts()):
                fake.bot_posted.clear()
                await fake.bot_posted.wait()
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"round-trip over {commands} commands: p50 {statistics.median(times):.1f} ms, "
            f"p99 {p99:.1f} ms"
        )

        await fake.stop()
        attempts = 0

        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal attempts
            attempts += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()

        standin = await asyncio.start_server(refuse, "127.0.0.1", port)
        counter = ByteCounter()
        logging.getLogger("chatopsd").addHandler(counter)
        cpu0, wall0 = cpu(), time.perf_counter()
        await asyncio.sleep(outage)
        used, wall = cpu() - cpu0, time.perf_counter() - wall0
        logging.getLogger("chatopsd").removeHandler(counter)
        standin.close()
        await standin.wait_closed()
        print(
            f"outage of {wall:.0f} s: {attempts} connection attempts "
            f"({attempts / wall:.2f}/s), CPU {used:.3f} s ({100 * used / wall:.2f}%), "
            f"log {counter.bytes} bytes ({counter.bytes * 60 / wall / 1024:.1f} KB/min)"
        )
        await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--outage", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(main(args.commands, args.outage))
