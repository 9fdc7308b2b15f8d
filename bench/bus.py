"""Benchmark: commands through the full bus (dedupe, authorize, durable audit, rate limit).

Prints: in-process latency p50/p99 and throughput for `!help` and `!ic` over 10,000 commands
each, the parse time of a 40 kB (and a refused 1 MB) message, `chatopsd run` start-to-ready
time, and the idle RSS of a console-only daemon.
Run: .venv/bin/python bench/bus.py   (a benchmark, not a test: figures vary by machine)
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatopsd.app import App, Io  # noqa: E402
from chatopsd.config import Config  # noqa: E402
from chatopsd.core.messages import Actor, Inbound  # noqa: E402

N = 10_000


def config(tmp: Path) -> Config:
    return Config.model_validate(
        {
            "chatopsd": {"state_db": str(tmp / "bench.db")},
            "ratelimit": {"per_minute": 1e9, "burst": 1_000_000},
        }
    )


async def in_process(tmp: Path) -> None:
    sink = io.StringIO()
    app = App(config(tmp), io=Io(stdin=io.StringIO(""), stdout=sink))
    await app.start()
    try:
        for text in ("!help", "!ic"):
            # latency: one command at a time, from event to replies queued, audit durable
            samples = []
            for i in range(N):
                event = Inbound(
                    "console", "bench", Actor(f"u{i % 50}"), text, event_id=f"lat-{text}-{i}"
                )
                start = time.perf_counter()
                await app.bus.handle(event)
                samples.append(time.perf_counter() - start)
            samples.sort()
            p50 = samples[len(samples) // 2] * 1e3
            p99 = samples[int(len(samples) * 0.99)] * 1e3
            await app.outbox.flush(60)
            sink.seek(0)
            sink.truncate()
            # throughput: 10,000 commands with up to 256 in flight (group commit at work)
            events = [
                Inbound("console", "bench", Actor(f"u{i % 50}"), text, event_id=f"tp-{text}-{i}")
                for i in range(N)
            ]
            start = time.perf_counter()
            sem = asyncio.Semaphore(256)

            async def one(ev: Inbound, sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    await app.bus.handle(ev)

            await asyncio.gather(*(one(e) for e in events))
            elapsed = time.perf_counter() - start
            await app.outbox.flush(60)
            sink.seek(0)
            sink.truncate()
            rows = await app.db.fetchone("SELECT COUNT(*) FROM audit WHERE text = $1", (text,))
            audited = rows[0] if rows else 0
            print(
                f"{text:6} latency p50 {p50:.3f} ms  p99 {p99:.3f} ms  |  throughput "
                f"{N / elapsed:,.0f} commands/s  |  audit rows {audited:,}"
            )
            assert audited == 2 * N, "every command must have its audit row"
        long_messages(app)
    finally:
        await app.stop()


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


def start_to_ready(tmp: Path, runs: int = 5) -> None:
    """`chatopsd run` as installed: with its bytecode. pip compiles it at install; a source
    checkout with PYTHONDONTWRITEBYTECODE set (as on the shared development machine) would
    compile every module on every start instead (about +0.15 s here), which is not what a
    deployed daemon does. So the children write and read bytecode under a private prefix,
    and a first, uncounted run fills it."""
    cfg = tmp / "run.toml"
    cfg.write_text(f"[chatopsd]\nstate_db = '{tmp / 'run.db'}'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    ready, answered, rss = [], [], []
    for run in range(runs + 1):
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
        for line in proc.stderr:
            if "chatopsd ready" in line:
                ready.append(time.perf_counter() - start)
                break
        proc.stdin.write("!help\n")
        proc.stdin.flush()
        proc.stdout.readline()
        answered.append(time.perf_counter() - start)
        time.sleep(1.0)  # idle
        rss.append(_rss_kib(proc.pid))
        proc.stdin.close()
        proc.wait(timeout=30)
        if run == 0:  # the warm-up that wrote the bytecode
            for figures in (ready, answered, rss):
                figures.clear()
    print(
        f"chatopsd run: ready in {statistics.median(ready) * 1e3:.0f} ms (median of {runs}, "
        f"from exec to 'ready', bytecode cached), first answer at "
        f"{statistics.median(answered) * 1e3:.0f} ms"
    )
    print(f"idle RSS (console only): {statistics.median(rss) / 1024:.1f} MiB")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    print(f"python {sys.version.split()[0]}, uvloop {uvloop.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        uvloop.run(in_process(Path(tmp)))
        start_to_ready(Path(tmp))


if __name__ == "__main__":
    main()
