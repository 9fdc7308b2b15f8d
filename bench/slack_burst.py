"""Slack burst: 1,000 envelopes sent at once through the fake Socket Mode server; prints the
ack latency p50/p99 (envelope sent -> its ack received, as the fake's clock sees them), the
time until all were acked and until all were answered, and the loop's largest lag.

Each ack still waits for its claim (durable in the state store); the claims of envelopes that
arrive together share one commit, and their acks leave together right after it (the bus tells
the connector at once; the commands go on once the burst is acked).
The daemon runs on uvloop, as `chatopsd run`. The fake Slack runs in the same process: on
the daemon's own event loop (as the tests run it; sending 1,000 envelopes then holds that
loop for tens of milliseconds, counted in every ack's latency), and with `--fake-thread` on
an event loop of its own in another thread (closer to a remote Slack; still the same
interpreter, so it competes for the GIL).

Run from the repository root: .venv/bin/python -m bench.slack_burst [--n 1000] [--rounds 3]
[--fake-thread]   (a benchmark, not a test: figures vary by machine)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from bench.slack import config, pct
from chatopsd.app import App
from chatopsd.core.ports import SystemClock
from chatopsd.looplag import LoopLag
from tests.fakes.slack import FakeSlack

T = TypeVar("T")


async def burst(n: int, fake_thread: bool = False) -> tuple[float, float, float, float, float]:
    """One burst of `n` on a fresh daemon: ack p50, p99 (ms), all acked, all answered (s),
    largest loop lag (ms)."""
    runner = _FakeThread() if fake_thread else None
    fake = await (runner.start() if runner else _started_fake())
    with tempfile.TemporaryDirectory() as tmp:
        app = App(config(Path(tmp) / "state.db", fake, 30.0), clock=SystemClock())
        await app.start()
        try:
            await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 10)
            # one command first: the user cache and the connection are warm, as in service
            await _on(runner, fake.event(fake.message("!help")))
            await _until(lambda: len(fake.posts()) >= 1, 10)
            lag = LoopLag(app.bus, tick=0.005, stall=math.inf)
            lag.start()
            start_posts = len(fake.posts())
            t0 = time.monotonic()
            ids = await _on(runner, _send(fake, n))
            await _until(lambda: all(i in fake.ack_times for i in ids), 60)
            acked = max(fake.ack_times[i] for i in ids) - t0
            await _until(lambda: len(fake.posts()) - start_posts >= n, 120)
            answered = time.monotonic() - t0
            lag.stop()
            lat = [fake.ack_times[i] - fake.sent_times[i] for i in ids]
            assert not fake.violations, fake.violations
            return pct(lat, 0.5), pct(lat, 0.99), acked, answered, lag.largest_lag * 1e3
        finally:
            await app.stop()
            if runner:
                runner.stop()
            else:
                await fake.stop()


async def _started_fake() -> FakeSlack:
    fake = FakeSlack()
    await fake.start()
    return fake


async def _send(fake: FakeSlack, n: int) -> list[str]:
    return [await fake.event(fake.message("!help")) for _ in range(n)]


async def _on(runner: _FakeThread | None, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on the fake's loop (its thread's, or this one)."""
    if runner is None:
        return await work
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, runner.loop))


async def _until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the burst was not acknowledged and answered in time")
        await asyncio.sleep(0.002)


class _FakeThread:
    """The fake Slack on an event loop of its own, in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-slack")
        self.fake: FakeSlack | None = None

    async def start(self) -> FakeSlack:
        self._thread.start()
        self.fake = await _on(self, _started_fake())
        return self.fake

    def stop(self) -> None:
        if self.fake is not None:
            asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="envelopes per burst")
    parser.add_argument("--rounds", type=int, default=3, help="bursts, each on a fresh daemon")
    parser.add_argument(
        "--fake-thread", action="store_true", help="the fake Slack on a loop of its own"
    )
    args = parser.parse_args()
    where = "its own loop, in a thread" if args.fake_thread else "the daemon's loop"
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} · fake Slack on {where}")
    runs = []
    for _ in range(args.rounds):
        runs.append(uvloop.run(burst(args.n, args.fake_thread)))
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
