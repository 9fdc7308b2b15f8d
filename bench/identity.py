"""Benchmark: what the identity service costs a command that needs it (a role given to an
address, a PagerDuty write), on SQLite: a configured identity (a dict lookup), an identity
with a confirmed `!pd link` (one indexed SELECT), and one with nothing known (the same SELECT).

Prints p50/p99 per resolution over 10,000 each.
Run: .venv/bin/python bench/identity.py   (a benchmark, not a test: figures vary by machine)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatopsd.core.capabilities import Capabilities  # noqa: E402
from chatopsd.core.messages import Actor  # noqa: E402
from chatopsd.identity.service import IdentityService  # noqa: E402
from chatopsd.identity.store import SqliteIdentityLinks  # noqa: E402
from chatopsd.store.backend import open_database  # noqa: E402

N = 10_000


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(None, Path(tmp) / "bench.db")
        links = SqliteIdentityLinks(db)
        for i in range(1000):  # a team's worth of links, one of them ours
            later = datetime.now(UTC) + timedelta(minutes=15)
            await links.claim("discord", str(i), f"p{i}@example.com", f"r{i}", later)
            await links.confirm("discord", str(i), f"p{i}@example.com", "slack:U0")
        service = IdentityService(links, Capabilities(), {"console:ada": "ada@example.com"})
        for label, actor in (
            ("configured", Actor("ada")),
            ("confirmed link", Actor("500")),
            ("nothing known", Actor("nobody")),
        ):
            platform = "console" if label != "confirmed link" else "discord"
            times = []
            for _ in range(N):
                start = time.perf_counter()
                await service.of(platform, actor)
                times.append((time.perf_counter() - start) * 1e6)
            times.sort()
            print(
                f"{label:>15}: p50 {statistics.median(times):7.1f} µs  "
                f"p99 {times[int(N * 0.99)]:7.1f} µs"
            )
        await db.close()


if __name__ == "__main__":
    uvloop.run(main())
