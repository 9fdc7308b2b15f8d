"""Slack burst: 1,000 envelopes sent at once through the fake Socket Mode server; prints the
ack latency p50/p99 (envelope sent -> its ack received, as the fake's clock sees them), the
time until all were acked and until all were answered, and the loop's largest lag.

Each ack still waits for its claim (durable in the state store); the claims of envelopes that
arrive together share one commit, and the commands act only once their acks went out.
The fake runs in the same process and on the same event loop (uvloop, as `chatopsd run`).

Run from the repository root: .venv/bin/python -m bench.slack_burst [--n 1000] [--rounds 3]
(a benchmark, not a test: figures vary by machine)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from bench.slack import config, pct
from chatopsd.app import App
from chatopsd.core.ports import SystemClock
from chatopsd.looplag import LoopLag
from tests.fakes.slack import FakeSlack


async def burst(n: int) -> tuple[float, float, float, float, float]:
    """One burst of `n` on a fresh daemon: ack p50, p99 (ms), all acked, all answered (s),
    largest loop lag (ms)."""
    fake = FakeSlack()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        app = App(config(Path(tmp) / "state.db", fake, 30.0), clock=SystemClock())
        await app.start()
        try:
            await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 10)
            # one command first: the user cache and the connection are warm, as in service
            await fake.event(fake.message("!help"))
            await fake.wait_for(lambda: len(fake.posts()) >= 1, timeout=10)
            lag = LoopLag(app.bus, tick=0.005, stall=math.inf)
            lag.start()
            start_posts = len(fake.posts())
            t0 = time.monotonic()
            ids = [await fake.event(fake.message("!help")) for _ in range(n)]
            await fake.wait_for(lambda: all(i in fake.ack_times for i in ids), timeout=60)
            acked = max(fake.ack_times[i] for i in ids) - t0
            await fake.wait_for(lambda: len(fake.posts()) - start_posts >= n, timeout=120)
            answered = time.monotonic() - t0
            lag.stop()
            lat = [fake.ack_times[i] - fake.sent_times[i] for i in ids]
            assert not fake.violations, fake.violations
            return pct(lat, 0.5), pct(lat, 0.99), acked, answered, lag.largest_lag * 1e3
        finally:
            await app.stop()
            await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="envelopes per burst")
    parser.add_argument("--rounds", type=int, default=3, help="bursts, each on a fresh daemon")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    runs = []
    for _ in range(args.rounds):
        runs.append(uvloop.run(burst(args.n)))
        p50, p99, acked, answered, lag = runs[-1]
        print(
            f"burst of {args.n}: ack p50 {p50:.1f} ms, p99 {p99:.1f} ms, all acked in "
            f"{acked:.3f} s, all answered in {answered:.2f} s, loop lag max {lag:.0f} ms"
        )
    p99s = [r[1] for r in runs]
    print(
        f"median of {args.rounds}: ack p99 {statistics.median(p99s):.1f} ms "
        f"(target < 100 ms), all answered in {statistics.median(r[3] for r in runs):.2f} s "
        "(target < 2 s)"
    )


if __name__ == "__main__":
    main()
