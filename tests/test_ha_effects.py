"""A slow operations command, and the chatopsd process running it killed with SIGKILL while
it runs: the command is never run a second time, its channel is told that the instance died
while running it (it may or may not have finished, and the exact text to run it again), and
the audit gets the row the killed process never wrote (`interrupted`).

- Two instances on one real PostgreSQL, both connected to the fake Mattermost (which, like
  the server, delivers every post to every connection of the bot): the instance that claimed
  the command is the one killed, whichever it is; the survivor reports it.
- One instance on SQLite: killed, restarted; the restart reports it.

Before, the survivor took the command over and ran the deploy again (at the same time as the
first, still running), and a kill on SQLite left no audit row and said nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fakes.mattermost import TOKEN, FakeMattermost
from tests.fixtures.mattermost import plain
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
LEASE = 2.0

# The deploy: records that it started (and which chatopsd runs it), then waits for the test.
DEPLOY = """
import json, os, sys, time
out = sys.argv[1]
with open(out, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "daemon": os.getppid(), "env": sys.argv[2]}) + "\\n")
while not os.path.exists(out + ".gate"):
    time.sleep(0.05)  # a slow deploy, until the test lets it end
print("deployed")
"""


class Daemons:
    """chatopsd processes sharing one deploy target and the fake Mattermost."""

    def __init__(self, tmp: Path, chat: FakeMattermost, database: str | None) -> None:
        self.tmp, self.chat, self.database = tmp, chat, database
        self.script = tmp / "deploy.py"
        self.script.write_text(DEPLOY)
        self.effects = tmp / "deploys.jsonl"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, name: str) -> Path:
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        database = f'database = "{self.database}"\n' if self.database else ""
        path = home / "chatopsd.toml"
        path.write_text(
            f"""
[chatopsd]
state_db = "{home / "state.db"}"
{database}lease_seconds = {LEASE}
instance = "{name}"
timezone = "UTC"
[console]
enabled = false
[control]
enabled = false
[mattermost]
url = "{self.chat.url}"
token = "{TOKEN}"
heartbeat_seconds = 1.0
[[commands]]
name = "deploy"
args = ["env"]
choices = {{ env = ["staging", "production"] }}
run = ["{sys.executable}", "{self.script}", "{self.effects}", "{{env}}"]
"""
        )
        return path

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatopsd", "run", "--config", str(self.config(name))],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.procs[name] = proc
        return proc

    def deploys(self) -> list[dict[str, Any]]:
        if not self.effects.exists():
            return []
        return [json.loads(line) for line in self.effects.read_text().splitlines()]

    def connected(self, n: int) -> bool:
        return sum(1 for c in self.chat.conns.values() if c.ws and not c.ws.closed) == n

    def answers(self, post_id: str) -> list[str]:
        return [plain(p["message"]) for p in self.chat.bot_posts() if p["root_id"] == post_id]

    async def barrier(self) -> None:
        """A `!help` answered: whatever came before it has been handled."""
        post = await self.chat.user_post("!help")
        await eventually(lambda: self.answers(post["id"]), what="!help answered", timeout=30)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-4000:]}"
            for name in self.procs
        )

    def stop(self) -> None:
        self.effects.with_name(self.effects.name + ".gate").touch()  # the orphaned deploy ends
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def chat() -> AsyncIterator[FakeMattermost]:
    fake = FakeMattermost()
    fake.broadcast = True  # every event to every connection of the bot, as the server does
    await fake.start()
    yield fake
    await fake.stop()


async def deploy_killed_mid_run(daemons: Daemons) -> tuple[str, dict[str, Any]]:
    """`!deploy production` posted; the chatopsd running it killed while the deploy runs."""
    post = await daemons.chat.user_post("!deploy production")
    await eventually(lambda: daemons.deploys(), what="the deploy started", timeout=30)
    [run] = daemons.deploys()
    os.kill(run["daemon"], signal.SIGKILL)
    return post["id"], run


def told(answers: list[str]) -> list[str]:
    return [a for a in answers if "interrupted" in a]


async def test_two_instances_on_postgresql_the_deploy_of_a_killed_one_runs_once(
    tmp_path: Path, pg_url: str, chat: FakeMattermost
) -> None:
    daemons = Daemons(tmp_path, chat, pg_url)
    try:
        one, two = daemons.start("one"), daemons.start("two")
        await eventually(lambda: daemons.connected(2), timeout=60, what="both instances connected")
        post_id, run = await deploy_killed_mid_run(daemons)
        killed = one if run["daemon"] == one.pid else two
        survivor = two if killed is one else one
        assert run["daemon"] in (one.pid, two.pid)
        await asyncio.to_thread(killed.wait, 10)

        await eventually(
            lambda: told(daemons.answers(post_id)), timeout=60, what="the channel told"
        )
        [notice] = told(daemons.answers(post_id))
        assert "may or may not have finished" in notice
        assert "!deploy production" in notice  # the exact text to run it again
        await daemons.barrier()
        assert len(daemons.deploys()) == 1, daemons.logs()  # never run a second time
        assert survivor.poll() is None

        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch(
                "SELECT command, outcome, cause FROM audit WHERE event_id = $1", post_id
            )
        finally:
            await conn.close()
        assert [(r["command"], r["outcome"]) for r in rows] == [("deploy", "interrupted")]
        assert "stopped while running it" in rows[0]["cause"]
    finally:
        daemons.stop()


async def test_sqlite_a_deploy_killed_mid_run_is_told_and_audited_at_the_next_start(
    tmp_path: Path, chat: FakeMattermost
) -> None:
    daemons = Daemons(tmp_path, chat, None)
    try:
        daemons.start("solo")
        await eventually(lambda: daemons.connected(1), timeout=60, what="connected")
        post_id, _run = await deploy_killed_mid_run(daemons)
        await asyncio.to_thread(daemons.procs["solo"].wait, 10)

        daemons.start("solo")  # the restart
        await eventually(
            lambda: told(daemons.answers(post_id)), timeout=60, what="the channel told"
        )
        [notice] = told(daemons.answers(post_id))
        assert "may or may not have finished" in notice and "!deploy production" in notice
        await daemons.barrier()
        assert len(daemons.deploys()) == 1, daemons.logs()

        audit = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable, "-m", "chatopsd", "audit", "--config",
                str(daemons.config("solo")), "--outcome", "interrupted", "--json",
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        [row] = [json.loads(line) for line in audit.stdout.splitlines()]
        assert (row["command"], row["outcome"], row["event_id"]) == (
            "deploy",
            "interrupted",
            post_id,
        )
        assert row["text"] == "!deploy production"
        assert "stopped while running it" in row["cause"]
    finally:
        daemons.stop()
