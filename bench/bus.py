"""Benchmark: commands through the full bus (dedupe, authorize, durable audit, rate limit).

Prints: in-process latency p50/p99, sequential throughput and throughput with 256 in flight
for `!help` and `!ic` over 10,000 commands each (`--n`), with the largest event-loop lag seen
during each (chatopsd/looplag.py, one check every 5 ms), the parse time of a 40 kB (and a
refused 1 MB) message, `chatopsd run` start-to-ready time, and the idle RSS of a console-only
daemon.
Run: .venv/bin/python bench/bus.py   (a benchmark, not a test: figures vary by machine)

bench/compare.py imports `in_process_figures` and `start_to_ready_figures` to put the same
figures next to opsdroid's and Errbot's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.process import rss_kib  # noqa: E402
from chatopsd.app import App, Io  # noqa: E402
from chatopsd.config import Config  # noqa: E402
from chatopsd.core.messages import Actor, Inbound  # noqa: E402
from chatopsd.looplag import LoopLag  # noqa: E402

N = 10_000
IN_FLIGHT = 256
# The benchmark's own loop-lag check: the daemon's monitor (chatopsd/looplag.py) with a finer
# tick, so a hold of a few ms is seen. Under uvloop the loop's clock counts whole ms.
LAG_TICK = 0.005


def config(tmp: Path) -> Config:
    return Config.model_validate(
        {
            "chatopsd": {"state_db": str(tmp / "bench.db")},
            "ratelimit": {"per_minute": 1e9, "burst": 1_000_000},
        }
    )


@dataclass(frozen=True)
class CommandFigures:
    """One command's figures: sequential latency and rate, rate with IN_FLIGHT at once, and
    the largest loop lag (ms) seen during each of the two runs."""

    text: str
    p50_ms: float
    p99_ms: float
    sequential_per_s: float
    in_flight_per_s: float
    lag_sequential_ms: float
    lag_in_flight_ms: float
    audited: int


async def command_figures(app: App, text: str, n: int = N) -> CommandFigures:
    sink = app.io.stdout
    assert isinstance(sink, io.StringIO)
    # latency: one command at a time, from event to replies queued, audit durable
    samples = []
    lag = _lag_monitor(app)
    began = time.perf_counter()
    for i in range(n):
        event = Inbound("console", "bench", Actor(f"u{i % 50}"), text, event_id=f"lat-{text}-{i}")
        start = time.perf_counter()
        await app.bus.handle(event)
        samples.append(time.perf_counter() - start)
    sequential = n / (time.perf_counter() - began)
    lag.stop()
    lag_sequential = lag.largest_lag
    samples.sort()
    p50 = samples[len(samples) // 2] * 1e3
    p99 = samples[int(len(samples) * 0.99)] * 1e3
    await app.outbox.flush(60)
    sink.seek(0)
    sink.truncate()
    # throughput: n commands with up to IN_FLIGHT in flight (group commit at work)
    events = [
        Inbound("console", "bench", Actor(f"u{i % 50}"), text, event_id=f"tp-{text}-{i}")
        for i in range(n)
    ]
    lag = _lag_monitor(app)
    start = time.perf_counter()
    # IN_FLIGHT workers taking the next event as each finishes (not n tasks queued on a
    # semaphore: waking its waiters costs the harness more than a command costs chatopsd)
    pending = iter(events)

    async def worker() -> None:
        for ev in pending:
            await app.bus.handle(ev)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    elapsed = time.perf_counter() - start
    lag.stop()
    await app.outbox.flush(60)
    sink.seek(0)
    sink.truncate()
    rows = await app.db.fetchone("SELECT COUNT(*) FROM audit WHERE text = $1", (text,))
    audited = rows[0] if rows else 0
    assert audited == 2 * n, "every command must have its audit row"
    return CommandFigures(
        text, p50, p99, sequential, n / elapsed, lag_sequential * 1e3, lag.largest_lag * 1e3,
        audited,
    )  # fmt: skip


def _lag_monitor(app: App) -> LoopLag:
    """A loop-lag check for one run (stalls are not logged: the figure is the largest lag)."""
    lag = LoopLag(app.bus, tick=LAG_TICK, stall=math.inf)
    lag.start()
    return lag


async def in_process_figures(
    tmp: Path,
    n: int = N,
    texts: tuple[str, ...] = ("!help", "!ic"),
    *,
    report: Callable[[CommandFigures], None] | None = None,
    long: bool = False,
) -> list[CommandFigures]:
    """Start a console-only app on a fresh database in `tmp`, measure each command (passing
    its figures to `report` as they come), then with `long` print the parse times."""
    app = App(config(tmp), io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    figures = []
    try:
        for text in texts:
            figures.append(await command_figures(app, text, n))
            if report is not None:
                report(figures[-1])
        if long:
            long_messages(app)
    finally:
        await app.stop()
    return figures


def long_messages(app: App) -> None:
    """Parse time (addressing + tokenizing + matching) of a 40 kB message, the most a command
    may be, and of a 1 MB one, which is refused before tokenizing."""
    words = " ".join(f"w{i:04d}" for i in range(8_000))  # 40,000 characters with the spaces
    for label, text in (
        ("40 kB", "!ic who " + words[: 40_000 - len("!ic who ")]),
        ("40 kB unknown", "!nope " + words[: 40_000 - len("!nope ")]),
        ("1 MB", "!ic who " + "x " * 500_000),
    ):
        event = Inbound("console", "bench", Actor("u1"), text, event_id=f"long-{label}")
        samples = []
        for _ in range(50):
            start = time.perf_counter()
            addressed = app.bus.addressed(event)
            assert addressed is not None
            app.bus._parse(event, addressed)
            samples.append(time.perf_counter() - start)
        samples.sort()
        print(
            f"parse {label:13} ({len(text):,} chars): median {samples[25] * 1e3:.2f} ms, "
            f"max {samples[-1] * 1e3:.2f} ms"
        )


@dataclass
class StartFigures:
    """Per start: exec to the 'ready' log line, to the first answer (s), idle RSS (KiB)."""

    ready_s: list[float] = field(default_factory=list)
    answered_s: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)


def start_to_ready_figures(
    tmp: Path, runs: int = 5, *, idle: float = 1.0, pycache: Path | None = None
) -> StartFigures:
    """`chatopsd run` as installed: with its bytecode. pip compiles it at install; a source
    checkout with PYTHONDONTWRITEBYTECODE set (as on the shared development machine) would
    compile every module on every start instead (about +0.15 s here), which is not what a
    deployed daemon does. So the children write and read bytecode under a private prefix
    (`pycache`, default in `tmp`), and a first, uncounted run fills it when it is new."""
    cfg = tmp / "run.toml"
    cfg.write_text(f"[chatopsd]\nstate_db = '{tmp / 'run.db'}'\n")
    pycache = pycache or tmp / "pycache"
    warm_up = not pycache.exists()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    figures = StartFigures()
    for run in range(runs + warm_up):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert proc.stderr is not None and proc.stdin is not None and proc.stdout is not None
        ready = math.nan
        for line in proc.stderr:
            if "chatopsd ready" in line:
                ready = time.perf_counter() - start
                break
        proc.stdin.write("!help\n")
        proc.stdin.flush()
        proc.stdout.readline()
        answered = time.perf_counter() - start
        time.sleep(idle)
        rss = rss_kib(proc.pid)
        proc.stdin.close()
        proc.wait(timeout=30)
        if warm_up and run == 0:  # the run that wrote the bytecode
            continue
        figures.ready_s.append(ready)
        figures.answered_s.append(answered)
        figures.rss_kib.append(rss)
    return figures


def print_figures(f: CommandFigures) -> None:
    print(
        f"{f.text:6} latency p50 {f.p50_ms:.3f} ms  p99 {f.p99_ms:.3f} ms  |  throughput "
        f"{f.sequential_per_s:,.0f}/s sequential, {f.in_flight_per_s:,.0f} commands/s with "
        f"{IN_FLIGHT} in flight  |  loop lag max {f.lag_sequential_ms:.0f} / "
        f"{f.lag_in_flight_ms:.0f} ms  |  audit rows {f.audited:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=N, help="commands per figure")
    n = parser.parse_args().n
    print(f"python {sys.version.split()[0]}, uvloop {uvloop.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        uvloop.run(in_process_figures(Path(tmp), n, report=print_figures, long=True))
        runs = 5
        starts = start_to_ready_figures(Path(tmp), runs)
        print(
            f"chatopsd run: ready in {statistics.median(starts.ready_s) * 1e3:.0f} ms (median of "
            f"{runs}, from exec to 'ready', bytecode cached), first answer at "
            f"{statistics.median(starts.answered_s) * 1e3:.0f} ms"
        )
        print(f"idle RSS (console only): {statistics.median(starts.rss_kib) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
