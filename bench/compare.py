"""chatopsd next to opsdroid and Errbot, side by side in one sitting: bench/bus.py's figures
and the peers' (../shared/bench-peers), interleaved in rounds, each figure with its ratio.

Run: .venv/bin/python bench/compare.py [--rounds 3] [--load 1]   (a benchmark, not a test)

Each round runs one fresh process per bot, in an order rotated from round to round, so all
three see the same machine: chatopsd's in-process figures for `!help` and `!ic` (bench/bus.py:
sequential p50/p99 and rate, rate with 256 in flight, loop lag) and one `chatopsd run`
start (exec to ready, to first answer, idle RSS); each peer's `ping i` round trip as
inproc_bench.py measures it (spawn to first answer, idle RSS, sequential, all N queued at
once). The figure printed is the median over the rounds, with the lowest and highest; the
ratio is chatopsd's median over the peer's (below 1 is better for times and memory, above 1
for rates).

Loop lag: the largest delay of a timer callback during each run, measured by the daemon's own
monitor (chatopsd/looplag.py, a check every 5 ms) for chatopsd and, loaded from that file, on
opsdroid's asyncio loop. Errbot's test backend runs on threads, not an event loop: n/a.
chatopsd runs on uvloop, whose clock counts whole milliseconds.

`--load N` keeps N other CPU-bound processes (busy loops) running for the whole sitting, for
the peers and chatopsd alike.

The peers' virtual environments live outside the repository, in `--cache` (default
$CHATOPSD_BENCH_CACHE, else ~/.cache/chatopsd-bench), made there on first use from PyPI as
../shared/bench-peers/README.md says. A peer whose harness or environment is missing is
skipped, and the output says so.

This file is also the child process of each run (`--child`); run by a peer's interpreter it
may import only the standard library at the top.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = ROOT.parent / "shared" / "bench-peers"
LOOPLAG = ROOT / "chatopsd" / "looplag.py"
CACHE_ENV = "CHATOPSD_BENCH_CACHE"
LAG_TICK = 0.005  # as bench/bus.py's


@dataclass(frozen=True)
class Peer:
    key: str
    name: str
    target: str  # inproc_bench.py --target
    venv: str  # folder in the cache
    packages: tuple[str, ...]  # as ../shared/bench-peers/README.md installs them


PEER_BOTS = (
    Peer("opsdroid", "opsdroid 0.31", "opsdroid-core", "venv-opsdroid",
         ("opsdroid==0.31.0", "setuptools<81")),
    Peer("errbot", "Errbot 6.2", "errbot-testbot", "venv-errbot", ("errbot==6.2.1", "pytest")),
)  # fmt: skip


# -- what is printed -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    ours: str  # key in chatopsd's figures
    theirs: str | None  # key in a peer's figures
    unit: str  # ms | /s | s | MiB
    target: Callable[[float, dict[str, float | None], int], str] | None = None


def _p99_target(ours: float, od: dict[str, float | None], load: int) -> str:
    peer = od.get("p99")
    if load:
        ok = peer is not None and ours <= 3 * peer
        return f"≤3× opsdroid under load: {_yes(ok)}"
    ok = ours < 0.6 and peer is not None and ours <= 2 * peer
    return f"<0.6 ms and ≤2× opsdroid: {_yes(ok)}"


def _p50_target(ours: float, od: dict[str, float | None], load: int) -> str:
    peer = od.get("p50")
    return f"≤1.5× opsdroid: {_yes(peer is not None and ours <= 1.5 * peer)}"


def _in_flight_target(ours: float, od: dict[str, float | None], load: int) -> str:
    peer = od.get("seq_rate")
    ok = ours >= 10_000 and peer is not None and ours >= 2 * peer
    return f"≥10,000/s and ≥2× opsdroid sequential: {_yes(ok)}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


ROWS = (
    Row("!help p50, sequential", "help_p50", "p50", "ms", _p50_target),
    Row("!help p99, sequential", "help_p99", "p99", "ms", _p99_target),
    Row("!ic p50, sequential", "ic_p50", "p50", "ms", _p50_target),
    Row("!ic p99, sequential", "ic_p99", "p99", "ms", _p99_target),
    Row("!help rate, sequential", "help_seq_rate", "seq_rate", "/s"),
    Row("!ic rate, sequential", "ic_seq_rate", "seq_rate", "/s"),
    Row("!help rate, 256 in flight *", "help_in_flight_rate", "pipe_rate", "/s", _in_flight_target),
    Row("!ic rate, 256 in flight *", "ic_in_flight_rate", "pipe_rate", "/s", _in_flight_target),
    Row("start → ready (console) **", "ready_s", "ready_s", "s",
        lambda v, od, load: f"<0.35 s: {_yes(v < 0.35)}"),
    Row("start → first answer", "answered_s", "ready_s", "s"),
    Row("idle RSS", "rss_mib", "rss_mib", "MiB", lambda v, od, load: f"<42 MiB: {_yes(v < 42)}"),
    Row("loop lag max, !help sequential", "help_lag_seq", "lag_seq", "ms"),
    Row("loop lag max, !ic sequential", "ic_lag_seq", "lag_seq", "ms"),
    Row("loop lag max, !help 256 in flight *", "help_lag_in_flight", "lag_pipe", "ms"),
    Row("loop lag max, !ic 256 in flight *", "ic_lag_in_flight", "lag_pipe", "ms"),
)  # fmt: skip

OPSDROID_KEYS = ("p50", "p99", "seq_rate")  # what the targets compare with
LAG_SUFFIXES = ("_lag_seq", "_lag_in_flight")
NOTES = (
    "ratio = chatopsd ÷ peer (times, memory, lag: below 1 is better; rates: above 1 is better)",
    "*  peers: all N queued at once (inproc_bench.py's pipelined run), not 256",
    "** chatopsd: exec to its 'ready' log line; peers: spawn to the first answer (their READY)",
    "loop lag: chatopsd/looplag.py's check every 5 ms; chatopsd's uvloop clock counts whole ms, "
    "Errbot has no event loop",
    "chatopsd writes a claim and a hash-chained audit row per command (SQLite, WAL); "
    "neither peer writes anything per command",
)


def _fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if unit == "/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:.1f}"


def _median(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _spread(given: list[float | None], unit: str) -> tuple[float | None, str]:
    """Median, and 'median (lowest–highest)' as text."""
    values = [v for v in given if v is not None and not math.isnan(v)]
    if not values:
        return None, "n/a"
    median = statistics.median(values)
    if len(values) == 1:
        return median, _fmt(median, unit)
    return median, f"{_fmt(median, unit)} ({_fmt(min(values), unit)}–{_fmt(max(values), unit)})"


def print_table(
    ours: list[dict[str, float]], peers: dict[str, list[dict[str, float | None]]], load: int
) -> None:
    shown = [p for p in PEER_BOTS if peers.get(p.key)]
    header = f"{'figure':42} {'chatopsd':24}"
    for peer in shown:
        header += f" {peer.name + ' (ratio)':34}"
    print(header + " target")
    for row in ROWS:
        median, text = _spread([r[row.ours] for r in ours], row.unit)
        line = f"{row.label + ' (' + row.unit + ')':42} {text:24}"
        peer_medians: dict[str, dict[str, float | None]] = {}
        for peer in shown:
            runs = peers[peer.key]
            assert row.theirs is not None
            theirs, their_text = _spread([r.get(row.theirs) for r in runs], row.unit)
            peer_medians[peer.key] = {k: _median(r.get(k) for r in runs) for k in OPSDROID_KEYS}
            ratio = f"{median / theirs:.2f}×" if median is not None and theirs else "–"
            lag_row = row.ours.endswith(LAG_SUFFIXES)
            if lag_row and theirs is not None and median is not None and median <= 1.0:
                ratio = "(1 ms steps)"  # uvloop's clock: a ratio to a finer figure means nothing
            line += f" {their_text + '  ' + ratio:34}"
        if row.target is not None and median is not None:
            line += " " + row.target(median, peer_medians.get("opsdroid", {}), load)
        print(line)
    for note in NOTES:
        print(note)


# -- the parent: rounds, interleaved ------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000, help="chatopsd commands per figure")
    parser.add_argument("--peer-n", type=int, default=1_000, help="peer commands per figure")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds idle before RSS")
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes to run beside")
    parser.add_argument("--cache", type=Path, default=None, help=f"peer venvs (${CACHE_ENV})")
    parser.add_argument("--peers", type=Path, default=PEERS, help="the bench-peers harness")
    parser.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    parser.add_argument("--child", choices=["chatopsd", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--pycache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "chatopsd":
        return chatopsd_child(args)
    if args.child == "peer":
        return peer_child(args)
    cache = args.cache or Path(
        os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "chatopsd-bench"
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"chatopsd vs opsdroid and Errbot, side by side · {when}")
    print(
        f"commit {_commit()} · python {sys.version.split()[0]} · {os.cpu_count()} CPUs · load "
        f"average {_loadavg()} at start · CPU already busy (other processes): {_busy():.0%}"
    )
    added = f"UNDER LOAD: {args.load} busy-loop process(es) beside" if args.load else "quiet"
    print(
        f"{args.rounds} rounds, order rotated · chatopsd {args.n:,} commands per figure, peers "
        f"{args.peer_n:,} · {args.idle:g} s idle before RSS · {added}"
    )
    pythons: dict[str, Path] = {}
    for peer in PEER_BOTS:
        found = peer_python(peer, cache, args.peers)
        if isinstance(found, str):
            print(f"{peer.name}: skipped ({found})")
        else:
            pythons[peer.key] = found
    machine0, ours0 = _cpu_times(), _ours()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    ours: list[dict[str, float]] = []
    peers: dict[str, list[dict[str, float | None]]] = {key: [] for key in pythons}
    try:
        with tempfile.TemporaryDirectory(prefix="chatopsd-compare-") as scratch:
            bots = ["chatopsd", *pythons]
            for round_no in range(args.rounds):
                shift = round_no % len(bots)
                for bot in bots[shift:] + bots[:shift]:
                    if bot == "chatopsd":
                        ours.append(run_chatopsd(args, Path(scratch)))
                        figures: dict[str, Any] = ours[-1]
                    else:
                        peer = next(p for p in PEER_BOTS if p.key == bot)
                        peers[bot].append(run_peer(peer, pythons[bot], args, Path(scratch)))
                        figures = peers[bot][-1]
                    print(f"  round {round_no + 1} {bot}: {_brief(figures)}", flush=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    (busy1, total1), (busy0, total0) = _cpu_times(), machine0
    total, spent = max(1e-9, total1 - total0), _ours() - ours0
    print(
        f"load average at end: {_loadavg()} · during the sitting the machine's CPUs were "
        f"{(busy1 - busy0) / total:.0%} busy, {spent / total:.0%} with this comparison (bots "
        f"and busy loops): other processes {max(0.0, busy1 - busy0 - spent) / total:.0%}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"chatopsd": ours, "peers": peers}, indent=1))
    print_table(ours, peers, args.load)


def _brief(figures: dict[str, Any]) -> str:
    keys = ("help_p99", "ic_p99", "p99", "ready_s", "rss_mib", "error_replies")
    return ", ".join(f"{k} {figures[k]:.3g}" for k in keys if figures.get(k) is not None)


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown (no git)"
    return (head or "unknown") + (" with local changes" if dirty else "")


def _cpu_times() -> tuple[float, float]:
    """The machine's busy and total CPU seconds so far (/proc/stat, all CPUs)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


def _ours() -> float:
    """CPU seconds used by this process and every child it has waited for (bots, busy loops)."""
    import resource

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _busy(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time spent busy over `seconds`, before anything of
    ours runs: on a shared machine, what the others are using."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1e-9, total1 - total0)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def peer_python(peer: Peer, cache: Path, harness: Path) -> Path | str:
    """The peer venv's interpreter, made on first use; or why the peer is skipped."""
    if not (harness / "inproc_bench.py").is_file():
        return f"no harness at {os.path.relpath(harness)}"
    venv = cache / peer.venv
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"{peer.name}: making its environment in {venv} (once; needs PyPI)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *peer.packages],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(venv, ignore_errors=True)  # half made: try again next time
        return f"could not install {' '.join(peer.packages)}: {exc}"
    return python


def run_chatopsd(args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    """One round of chatopsd's figures, in a fresh process (a fresh database, heap, caches)."""
    result = _child(
        [sys.executable, str(Path(__file__).resolve()), "--child", "chatopsd", "--n", str(args.n),
         "--idle", str(args.idle), "--pycache", str(scratch / "pycache")],
        scratch, "chatopsd",
    )  # fmt: skip
    figures: dict[str, float] = {}
    for command in result["commands"]:
        name = command["text"].lstrip("!")
        figures[f"{name}_p50"] = command["p50_ms"]
        figures[f"{name}_p99"] = command["p99_ms"]
        figures[f"{name}_seq_rate"] = command["sequential_per_s"]
        figures[f"{name}_in_flight_rate"] = command["in_flight_per_s"]
        figures[f"{name}_lag_seq"] = command["lag_sequential_ms"]
        figures[f"{name}_lag_in_flight"] = command["lag_in_flight_ms"]
    figures["ready_s"] = statistics.median(result["ready_s"])
    figures["answered_s"] = statistics.median(result["answered_s"])
    figures["rss_mib"] = statistics.median(result["rss_kib"]) / 1024
    return figures


def run_peer(
    peer: Peer, python: Path, args: argparse.Namespace, scratch: Path
) -> dict[str, float | None]:
    """One start of a peer, as inproc_bench.py's parent times it: spawn to READY."""
    result = _child(
        [str(python), str(Path(__file__).resolve()), "--child", "peer", "--target", peer.target,
         "--n", str(args.peer_n), "--idle", str(args.idle), "--peers", str(args.peers.resolve())],
        scratch, peer.key,
    )  # fmt: skip
    lag = result.get("loop_lag") or {}
    return {
        "p50": result["seq"]["latency"]["p50_ms"],
        "p99": result["seq"]["latency"]["p99_ms"],
        "seq_rate": result["seq"]["msgs_per_s"],
        "pipe_rate": result["pipelined"]["msgs_per_s"],
        "ready_s": result["ready_s"],
        "answered_s": result["ready_s"],
        "rss_mib": result["rss_idle"]["VmRSS"] / 1024,
        "lag_seq": lag.get("seq_ms"),
        "lag_pipe": lag.get("pipelined_ms"),
        "error_replies": result.get("error_replies") or None,
    }


def _child(command: list[str], scratch: Path, name: str) -> dict[str, Any]:
    """Run a child; its READY line times the start, its RESULT line is the figures."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", BENCH_RESULTS=str(scratch / "peers"))
    env["XDG_DATA_HOME"] = str(scratch / "xdg")
    errors = scratch / f"{name}.stderr"
    start = time.perf_counter()
    with errors.open("w") as err:
        proc = subprocess.Popen(command, cwd=scratch, env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True)  # fmt: skip
        assert proc.stdout is not None
        result: dict[str, Any] | None = None
        ready = math.nan
        for line in proc.stdout:
            if line.startswith("READY"):
                ready = time.perf_counter() - start
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
        proc.wait()
    if result is None or proc.returncode != 0:
        tail = errors.read_text()[-2000:]
        sys.exit(f"{name} run failed (exit {proc.returncode}):\n{tail}")
    result.setdefault("ready_s", ready)
    return result


# -- the children --------------------------------------------------------------------------


def _without_bench_on_path() -> None:
    """Run as a script, this folder is first on sys.path, and bench/discord.py would then
    stand in for discord.py: take it off."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]


def chatopsd_child(args: argparse.Namespace) -> None:
    _without_bench_on_path()
    sys.path.insert(0, str(ROOT))
    from dataclasses import asdict

    import uvloop

    from bench import bus

    with tempfile.TemporaryDirectory() as tmp:
        commands = uvloop.run(bus.in_process_figures(Path(tmp), args.n))
        starts = bus.start_to_ready_figures(Path(tmp), 1, idle=args.idle, pycache=args.pycache)
    result = {"commands": [asdict(c) for c in commands], **asdict(starts)}
    print("RESULT " + json.dumps(result), flush=True)


def peer_child(args: argparse.Namespace) -> None:
    """inproc_bench.py's child for the target, with the loop-lag monitor around its two
    timed runs when the peer has an event loop (opsdroid)."""
    _without_bench_on_path()
    sys.path.insert(0, str(args.peers))
    import inproc_bench

    lags: dict[str, float] = {}
    if args.target == "opsdroid-core":
        finish_async = inproc_bench.finish_async
        looplag = _load_looplag()

        def lagged(run: Callable[[int], Any], name: str) -> Callable[[int], Any]:
            async def measured(n: int) -> Any:
                if n != args.n:  # the warm-up
                    return await run(n)
                monitor = looplag.LoopLag(_NoCommands(), tick=LAG_TICK, stall=math.inf)
                monitor.start()
                try:
                    return await run(n)
                finally:
                    monitor.stop()
                    lags[name] = monitor.largest_lag * 1e3

            return measured

        async def finish_lagged(a: Any, seq: Any, pipelined: Any) -> None:
            await finish_async(a, lagged(seq, "seq_ms"), lagged(pipelined, "pipelined_ms"))

        inproc_bench.finish_async = finish_lagged
    report = inproc_bench._report

    def report_lag(res: dict[str, Any], *rest: Any) -> None:
        res["loop_lag"] = lags
        report(res, *rest)

    inproc_bench._report = report_lag
    child = inproc_bench.child_opsdroid if args.target == "opsdroid-core" else None
    (child or inproc_bench.child_errbot)(argparse.Namespace(n=args.n, idle=args.idle))


class _NoCommands:
    """The monitor's view of what runs (chatopsd's bus): a peer has nothing to name."""

    def activity_mark(self) -> int:
        return 0

    def commands_since(self, mark: int) -> list[str]:
        return []


def _load_looplag() -> Any:
    """chatopsd/looplag.py (standard library only), loaded by path into the peer's python."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("chatopsd_looplag", LOOPLAG)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
