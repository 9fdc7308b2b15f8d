"""Benchmark: what recording "started" (core/middleware.Started) costs, on SQLite.

In one process, alternating rounds so that machine noise hits both sides alike:
- `!help` and `!ic` through the full chain with the Started step and without it (they have no
  outside effects: the step must cost them nothing measurable);
- a no-op command marked `effects=True` against the same command unmarked: the price of the
  durable "started" write and "answered" update that such a command pays.
Prints the median over rounds of each round's p50 latency.
Run: .venv/bin/python bench/started.py   (a benchmark, not a test: figures vary by machine)
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bus import config  # noqa: E402
from chatopsd.app import App, Io  # noqa: E402
from chatopsd.core.bus import Middleware  # noqa: E402
from chatopsd.core.commands import CommandSpec  # noqa: E402
from chatopsd.core.context import Call  # noqa: E402
from chatopsd.core.messages import Actor, Inbound, Reply  # noqa: E402
from chatopsd.core.middleware import Started  # noqa: E402

ROUNDS, PER_ROUND = 8, 2000


async def noop(_call: Call) -> Reply:
    return Reply(text="done")


async def p50(app: App, text: str, chain: Sequence[Middleware], start: int) -> float:
    app.bus.set_middleware(chain)
    samples = []
    for i in range(PER_ROUND):
        event = Inbound("console", "bench", Actor(f"u{i % 50}"), text, event_id=f"s-{start + i}")
        began = time.perf_counter()
        await app.bus.handle(event)
        samples.append(time.perf_counter() - began)
    await app.outbox.flush(60)
    samples.sort()
    return samples[len(samples) // 2] * 1e3


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = App(config(Path(tmp)), io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
        await app.start()
        app.registry.add(CommandSpec(("noop", "plain"), "no effects", noop))
        app.registry.add(CommandSpec(("noop", "effects"), "marked", noop, effects=True))
        full = app._middleware()
        without = [m for m in full if not isinstance(m, Started)]
        cases = [
            ("!help, with the Started step", "!help", full),
            ("!help, without it", "!help", without),
            ("!ic, with the Started step", "!ic", full),
            ("!ic, without it", "!ic", without),
            ("no-op, effects=True", "!noop effects", full),
            ("no-op, not marked", "!noop plain", full),
        ]
        found: dict[str, list[float]] = {label: [] for label, _, _ in cases}
        n = 0
        try:
            for round_ in range(ROUNDS):
                order = cases if round_ % 2 else list(reversed(cases))
                for label, text, chain in order:
                    found[label].append(await p50(app, text, chain, n))
                    n += PER_ROUND
        finally:
            await app.stop()
        for label, values in found.items():
            print(f"{label:30} p50 {statistics.median(values):.3f} ms (median of {ROUNDS} rounds)")


if __name__ == "__main__":
    uvloop.run(main())
