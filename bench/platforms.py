"""Every platform connected at once: exec -> each connector connected, and RSS once connected.

    .venv/bin/python bench/platforms.py [--runs 5] [--idle 1.0]

The daemon runs as its own process (`python -m chatopsd run --config ...`), as it is deployed,
with [slack], [discord] and [mattermost] pointed at the protocol fakes in tests/fakes/ (served
from this process, the sections as tests/rig.py writes them); then a second figure with
[teams] as well (the fake Relay and Bot Connector, as bench/teams.py starts them). Measured from
here, per start: exec -> the `chatopsd ready` log line, exec -> the last `<platform> connected`
line (every connector connected), and the daemon's VmRSS `--idle` seconds after that. Median of
`--runs` starts, after one uncounted start that fills the bytecode cache (see
bench/bus.py's start_to_ready_figures: a deployed daemon reads its bytecode, it does not
compile it at every start).

Targets (issue: start-up and memory): the three platforms connected in under 0.7 s and under
62 MiB against these local fakes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The script's own folder comes first on sys.path, and bench/discord.py would shadow discord.py.
sys.path[0] = str(ROOT)

from bench.process import rss_kib, toml  # noqa: E402
from tests.fakes.teams_bot import FakeBotService  # noqa: E402
from tests.fakes.teams_relay import FakeRelay  # noqa: E402
from tests.rig import DiscordChat, MattermostChat, SlackChat  # noqa: E402
from tests.teams_helpers import raw_section  # noqa: E402

CONNECTED = re.compile(r"\b(\w+) connected\b")
TIMEOUT = 60.0


@dataclass
class Figures:
    ready_s: list[float] = field(default_factory=list)
    connected_s: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    # per platform: exec -> its `connected` line
    each_s: dict[str, list[float]] = field(default_factory=dict)


async def one_start(
    cfg: Path, env: dict[str, str], platforms: set[str], idle: float, figures: Figures | None
) -> None:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    ready = float("nan")
    seen: dict[str, float] = {}
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(TIMEOUT):
            while not platforms <= seen.keys():
                line = (await proc.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError(f"the daemon exited before connecting; saw {sorted(seen)}")
                now = time.perf_counter() - start
                if "chatopsd ready" in line:
                    ready = now
                found = CONNECTED.search(line)
                if found and found.group(1) in platforms:
                    seen.setdefault(found.group(1), now)
        # keep reading stderr so the daemon never blocks on a full pipe while idle
        drain = asyncio.create_task(proc.stderr.read())
        await asyncio.sleep(idle)
        rss = rss_kib(proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        if drain is not None:
            await drain
    if figures is not None:
        figures.ready_s.append(ready)
        figures.connected_s.append(max(seen.values()))
        figures.rss_kib.append(rss)
        for name, at in seen.items():
            figures.each_s.setdefault(name, []).append(at)


async def measure(tables: dict[str, dict[str, Any]], tmp: Path, runs: int, idle: float) -> Figures:
    platforms = {name for name in tables if name not in {"chatopsd", "ratelimit", "console"}}
    cfg = tmp / f"{'-'.join(sorted(platforms))}.toml"
    cfg.write_text(toml(tables))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CHATOPSD_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    figures = Figures()
    for run in range(runs + 1):
        (tmp / "state.db").unlink(missing_ok=True)  # each start from an empty state, alike
        await one_start(cfg, env, platforms, idle, figures if run else None)
    return figures


def report(label: str, f: Figures) -> None:
    each = ", ".join(
        f"{name} {statistics.median(at) * 1e3:.0f}" for name, at in sorted(f.each_s.items())
    )
    print(
        f"{label}: all connected in {statistics.median(f.connected_s) * 1e3:.0f} ms "
        f"(min {min(f.connected_s) * 1e3:.0f}, max {max(f.connected_s) * 1e3:.0f}), "
        f"RSS {statistics.median(f.rss_kib) / 1024:.1f} MiB "
        f"(median of {len(f.connected_s)}, from exec)"
    )
    print(f"  'chatopsd ready' at {statistics.median(f.ready_s) * 1e3:.0f} ms; each, ms: {each}")


async def main(runs: int, idle: float) -> None:
    slack, discord, mattermost = SlackChat(), DiscordChat(), MattermostChat()
    relay, bot = FakeRelay(pong_every=30, timeout=30), FakeBotService()
    for chat in (slack, discord, mattermost):
        await chat.start()
    await relay.start()
    await bot.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base: dict[str, dict[str, Any]] = {
                "chatopsd": {"state_db": f"{tmp}/state.db"},
                "console": {"enabled": False},
                "slack": slack.section(),
                "discord": discord.section(),
                "mattermost": mattermost.section(),
            }
            three = await measure(base, Path(tmp), runs, idle)
            teams = {**base, "teams": raw_section(relay.listen_url, bot.section())}
            four = await measure(teams, Path(tmp), runs, idle)
            print(f"load average: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
            report("slack + discord + mattermost", three)
            print("  target: under 700 ms and under 62 MiB")
            report("with teams as well", four)
    finally:
        for chat in (slack, discord, mattermost):
            await chat.stop()
        await relay.close()
        await bot.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.idle))
