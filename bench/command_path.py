"""Where one command's time goes: the durable writes, the group commits, the collector.

Runs `!help` and `!ic` one at a time through the whole bus (as bench/bus.py does) and times
each stage of every command from outside, by wrapping the app's own objects for this run:
the claim (event ledger), the audit append (and its hash), each group commit of the SQLite
writer (on the loop's own thread: SQLite's work and nothing else) and the garbage collector.
Prints each stage's mean over the commands around the median (p45-p55) and over the slowest
1 %, so the stages that set p50 and p99 can be read off, then the slowest commits (WAL
checkpoints run on a thread of their own, never inside a commit). Then 10,000 commands with
256 in flight: the group commits (statements each, time each).

Run: .venv/bin/python bench/command_path.py [--n 10000]   (a diagnosis, not a test)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bus import config  # noqa: E402
from chatopsd.app import App, Io  # noqa: E402
from chatopsd.core.messages import Actor, Inbound  # noqa: E402

IN_FLIGHT = 256


class Stages:
    """Seconds spent per stage by the command running now, and every SQLite operation."""

    def __init__(self) -> None:
        self.now: dict[str, float] = {}
        self.operations: list[tuple[float, float, float, str]] = []  # wait, run, back, sql
        self.collections: list[tuple[int, float]] = []  # generation, seconds
        self._gc_start = 0.0

    def add(self, stage: str, seconds: float) -> None:
        self.now[stage] = self.now.get(stage, 0.0) + seconds

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        seconds = time.perf_counter() - self._gc_start
        self.collections.append((info["generation"], seconds))
        self.add("garbage collector", seconds)


def time_awaits(obj: Any, name: str, stage: str, stages: Stages) -> None:
    """Wrap `obj.name` (a coroutine method) so its awaited time counts for `stage`."""
    inner = getattr(obj, name)

    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            stages.add(stage, time.perf_counter() - start)

    setattr(obj, name, timed)


def time_calls(module: Any, name: str, stage: str, stages: Stages) -> None:
    inner = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            stages.add(stage, time.perf_counter() - start)

    setattr(module, name, timed)


def time_commits(db: Any, stages: Stages) -> Callable[[], None]:
    """Every group commit of the SQLite writer (synchronous, on the loop's thread); returns
    the function that unwraps it."""
    inner: Callable[[list[Any]], None] = db._commit

    def commit(batch: list[Any]) -> None:
        start = time.perf_counter()
        try:
            inner(batch)
        finally:
            ran = time.perf_counter() - start
            sql = batch[0].ops[0][0][:40] if batch and batch[0].ops else "?"
            stages.operations.append((0.0, ran, 0.0, sql))
            stages.add("SQLite group commit (on the loop)", ran)

    db._commit = commit

    def unwrap() -> None:
        db._commit = inner

    return unwrap


async def sequential(app: App, stages: Stages, text: str, n: int) -> None:
    rows: list[tuple[float, dict[str, float]]] = []
    stages.operations.clear()
    stages.collections.clear()
    for i in range(n):
        event = Inbound("console", "bench", Actor(f"u{i % 50}"), text, event_id=f"s{text}{i}")
        stages.now = {}
        start = time.perf_counter()
        await app.bus.handle(event)
        rows.append((time.perf_counter() - start, stages.now))
    await app.outbox.flush(60)
    rows.sort(key=lambda row: row[0])
    middle, slowest = rows[int(n * 0.45) : int(n * 0.55)], rows[int(n * 0.99) :]
    print(
        f"\n{text}, one at a time: p50 {rows[n // 2][0] * 1e3:.3f} ms, "
        f"p99 {rows[int(n * 0.99)][0] * 1e3:.3f} ms ({n:,} commands)"
    )
    print(f"  {'stage (µs per command)':44} {'p45-p55':>9} {'slowest 1 %':>12}")
    names = sorted({name for _, spent in rows for name in spent})
    for name in [*names, "whole command"]:

        def mean(group: list[tuple[float, dict[str, float]]], name: str = name) -> float:
            if name == "whole command":
                return statistics.fmean(total for total, _ in group) * 1e6
            return statistics.fmean(spent.get(name, 0.0) for _, spent in group) * 1e6

        print(f"  {name:44} {mean(middle):9.1f} {mean(slowest):12.1f}")
    ops = stages.operations
    if ops:

        def q(index: int, quantile: float) -> float:
            values = sorted(float(op[index]) for op in ops)
            return values[int(len(values) * quantile)] * 1e6

        print(
            f"  SQLite group commits: {len(ops) / n:.2f} per command; p50/p99 µs "
            f"{q(1, 0.5):.0f}/{q(1, 0.99):.0f}"
        )
        slow = Counter(op[3] for op in ops if op[1] > 1e-3)
        print(
            f"  SQLite group commits over 1 ms: {sum(slow.values())} "
            f"({dict(slow)}); slowest {max(op[1] for op in ops) * 1e3:.1f} ms"
        )
    pauses = [seconds for _, seconds in stages.collections]
    print(
        f"  garbage collections: {len(pauses)} (generation 2: "
        f"{sum(1 for g, _ in stages.collections if g == 2)}), longest "
        f"{max(pauses, default=0.0) * 1e3:.2f} ms"
    )


async def in_flight(app: App, text: str, n: int) -> None:
    """The group commit under IN_FLIGHT concurrent commands: its batches and their time."""
    db: Any = app.db  # SQLite's: the group commit is its own
    commits: list[tuple[int, float]] = []  # statements, seconds
    inner = db._commit

    def commit(batch: list[Any]) -> None:
        start = time.perf_counter()
        inner(batch)
        commits.append((sum(len(work.ops) for work in batch), time.perf_counter() - start))

    db._commit = commit
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with sem:
            event = Inbound("console", "bench", Actor(f"u{i % 50}"), text, event_id=f"f{text}{i}")
            await app.bus.handle(event)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await app.outbox.flush(60)
    db._commit = inner
    print(
        f"\n{text}, {IN_FLIGHT} in flight: {n / elapsed:,.0f} commands/s; {len(commits)} group "
        f"commits, statements each median {statistics.median(c[0] for c in commits):.0f} "
        f"(max {max(c[0] for c in commits)}); a commit takes median "
        f"{statistics.median(c[1] for c in commits) * 1e3:.2f} ms, the writer was committing "
        f"{sum(c[1] for c in commits) / elapsed:.0%} of the time"
    )


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = App(config(Path(tmp)), io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
        await app.start()
        unwrap = None
        try:
            stages = Stages()
            time_awaits(app.ledger, "claim", "claim (awaited write)", stages)
            time_awaits(app.audit, "append", "audit row (awaited write, hash included)", stages)
            time_calls(sys.modules[type(app.audit).__module__], "row_hash", "audit hash", stages)
            unwrap = time_commits(app.db, stages)
            gc.callbacks.append(stages.on_gc)
            for text in ("!help", "!ic"):
                await sequential(app, stages, text, n)
            gc.callbacks.remove(stages.on_gc)
            unwrap()
            unwrap = None
            await in_flight(app, "!help", n)
        finally:
            if unwrap is not None:
                unwrap()
            await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="commands per run")
    uvloop.run(main(parser.parse_args().n))
