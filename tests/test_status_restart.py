"""Stalkers survive kill -9: a real daemon process, killed and restarted on the same database.

The source is a command (`cat` of a state file), so the test flips the state by writing a
file. status.stalk_seconds = 1 keeps the wall-clock waits to a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, config: Path, log: Path) -> Daemon:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatopsd",
            "run",
            "--config",
            str(config),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("ab"),
        )
        return cls(proc)

    def say(self, text: str, event_id: str) -> None:
        assert self.proc.stdin is not None
        line = {"text": text, "channel": "ops", "event_id": event_id, "actor": "ada"}
        self.proc.stdin.write((json.dumps(line) + "\n").encode())

    async def next(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            return None
        return json.loads(raw) if raw else None

    async def lines_for(self, seconds: float) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        found = []
        while (left := end - loop.time()) > 0:
            line = await self.next(left)
            if line is None:
                break
            found.append(line)
        return found

    async def wait_for(self, needle: str, timeout: float = 10) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (left := end - loop.time()) > 0:
            line = await self.next(left)
            if line is not None and needle in line.get("text", ""):
                return line
        raise AssertionError(f"no output containing {needle!r} in {timeout} s")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)


async def test_stalkers_survive_sigkill_and_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("ok\n")
    config = tmp_path / "chatopsd.toml"
    config.write_text(
        f"""
[chatopsd]
state_db = "{tmp_path / "state.db"}"

[console]
enabled = true
format = "jsonl"

[status]
stalk_seconds = 1

[[status.sources]]
kind = "command"
name = "probe"
argv = ["/bin/cat", "{state}"]
output_map = {{ ok = "NORMAL", down = "CRITICAL" }}
"""
    )
    log = tmp_path / "daemon.log"
    first = await Daemon.start(config, log)
    try:
        first.say("!status stalk", "e1")
        await first.wait_for("Stalking: I check every 1 s")
        state.write_text("down\n")
        post = await first.wait_for("Status changed")
        assert post["text"].startswith("🔥 Status changed: CRITICAL (was NORMAL)")
        assert post["channel"] == "ops" and post["reply_to"] is None
    finally:
        first.kill()
        await first.proc.wait()

    second = await Daemon.start(config, log)
    try:
        # several polls with the state unchanged since the last post: nothing is repeated
        assert await second.lines_for(2.5) == []
        state.write_text("ok\n")
        post = await second.wait_for("Status changed")
        assert post["text"].startswith("✅ Status changed: NORMAL (was CRITICAL)")
        second.say("!status stalkers", "e2")
        listing = await second.wait_for("stalking the status")
        assert "console:ops: every 1 s, last told NORMAL, by ada" in listing["text"]
        assert await second.lines_for(1.5) == []  # told once
    finally:
        assert second.proc.stdin is not None
        second.proc.stdin.close()
        try:
            await asyncio.wait_for(second.proc.wait(), 10)
        except TimeoutError:
            second.kill()
            await second.proc.wait()
    assert second.proc.returncode == 0, log.read_text()
