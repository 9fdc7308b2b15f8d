"""Time one status poll and its fan-out with 1,000 stalking channels and one state change.

Runs the real App (bus, SQLite, outbox, console connector writing JSON lines to memory)
against an in-process HTTP status endpoint on 127.0.0.1.

    .venv/bin/python bench/status.py [--stalkers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from chatopsd.app import App, Io
from chatopsd.config import Config
from chatopsd.core.messages import Actor, Inbound
from chatopsd.features.status.stalkers import Stalkers


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 23, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return time.monotonic()


async def main(n: int) -> None:
    doc = {"status": {"indicator": "none"}}
    hits = 0

    async def handle(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response(doc)

    server = web.Application()
    server.router.add_get("/status.json", handle)
    runner = web.AppRunner(server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.model_validate(
            {
                "chatopsd": {"state_db": f"{tmp}/state.db"},
                "console": {"format": "jsonl"},
                "ratelimit": {"per_minute": 1e9, "burst": 10**9},
                "status": {
                    "stalk_seconds": 3600,  # the scheduler stays out of the way; we call poll()
                    "sources": [
                        {
                            "kind": "http",
                            "name": "sp",
                            "url": f"http://127.0.0.1:{port}/status.json",
                            "field": "status.indicator",
                        }
                    ],
                },
            }
        )
        clock = Clock()
        out = io.StringIO()
        app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out))
        await app.start()
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                app.bus.handle(
                    Inbound("console", f"c{i}", Actor(f"u{i}"), "!status stalk", event_id=f"e{i}")
                )
                for i in range(n)
            )
        )
        print(
            f"registered {len(app.part(Stalkers).stalkers)} stalkers in "
            f"{(time.perf_counter() - t0) * 1000:.0f} ms ({hits} source reads)"
        )

        for label in ("poll, no change", "poll, no change (again)"):
            clock.t += timedelta(hours=1)
            before, t0 = hits, time.perf_counter()
            result = await app.part(Stalkers).poll()
            print(
                f"{label}: {(time.perf_counter() - t0) * 1000:.2f} ms, "
                f"{hits - before} source read, {result.posted} posts"
            )

        doc["status"]["indicator"] = "major"
        clock.t += timedelta(hours=1)
        await app.outbox.flush(30)  # the stalk answers are not part of the figure
        out.seek(0)
        out.truncate()
        before, t0 = hits, time.perf_counter()
        result = await app.part(Stalkers).poll()
        t_poll = time.perf_counter() - t0
        await app.part(Stalkers).wait_posted()
        t_all = time.perf_counter() - t0
        lines = out.getvalue().count("\n")
        print(
            f"poll with one state change: {t_poll * 1000:.1f} ms to decide and persist "
            f"{result.posted} stalkers ({hits - before} source read)"
        )
        print(
            f"poll + fan-out until all {lines} posts were handed to the connector: "
            f"{t_all * 1000:.1f} ms"
        )
        await app.stop()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stalkers", type=int, default=1000)
    asyncio.run(main(parser.parse_args().stalkers))
