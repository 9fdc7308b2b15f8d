"""Two chatopsd processes on one real PostgreSQL, both connected to the fake Mattermost (which,
like the real server, delivers every event to every connection of the bot).

Checked: every command is answered exactly once across the two; after `kill -9` of the
leader nothing is answered twice and everything sent afterwards is answered; the status
stalker's change made during the failover is posted exactly once, by the survivor, which
takes the lease within lease_seconds + one renewal interval; the killed instance, restarted,
rejoins as a follower.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fakes.mattermost import TOKEN, FakeMattermost
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import (
    pd,  # noqa: F401 (fixtures)
    pd_section,
)

LEASE = 2.0
ROOT = Path(__file__).resolve().parent.parent


async def until(cond: Callable[[], Any], timeout: float = 20.0) -> float:
    started = time.monotonic()
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def server() -> AsyncIterator[FakeMattermost]:
    # Not tests/fixtures/mattermost.py's: this one delivers every event to every connection.
    fake = FakeMattermost()
    fake.broadcast = True
    await fake.start()
    yield fake
    await fake.stop()


def toml_table(values: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    return "\n".join(f"{k} = {value(v)}" for k, v in values.items())


class Instances:
    def __init__(self, tmp: Path, pg_url: str, mm_url: str, pd: FakePagerDuty) -> None:
        self.tmp, self.pg_url, self.mm_url = tmp, pg_url, mm_url
        self.pagerduty = toml_table(pd_section(pd, refresh_seconds=5, page_deadline_seconds=5))
        self.status_file = tmp / "status"
        self.status_file.write_text("normal\n")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        cfg = home / "chatopsd.toml"
        cfg.write_text(
            f"""
[chatopsd]
state_db = "{home / "state.db"}"
database = "{self.pg_url}"
lease_seconds = {LEASE}
instance = "{name}"
[console]
enabled = false
[control]
enabled = false
[ratelimit]
per_minute = 100000
burst = 100000
[mattermost]
url = "{self.mm_url}"
token = "{TOKEN}"
heartbeat_seconds = 1.0
[status]
stalk_seconds = 1
[[status.sources]]
kind = "command"
name = "file"
argv = ["cat", "{self.status_file}"]
output_map = {{ normal = "NORMAL", critical = "CRITICAL" }}
[pagerduty]
{self.pagerduty}
"""
        )
        log = (home / "log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def lease_holder(pg_url: str) -> str | None:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval("SELECT holder FROM lease WHERE id = 1")
    finally:
        await conn.close()


def answers(server: FakeMattermost) -> collections.Counter[str]:
    return collections.Counter(p["root_id"] for p in server.bot_posts() if p["root_id"])


def changed(post: dict[str, Any]) -> bool:
    """A stalker's post that the status went critical."""
    return "CRITICAL" in post["message"].upper() and "!help" not in post["message"]


def live_connections(server: FakeMattermost) -> int:
    return sum(1 for c in server.conns.values() if c.ws is not None and not c.ws.closed)


async def refreshed(pg_url: str) -> bool:
    conn = await asyncpg.connect(pg_url)
    try:
        return bool(await conn.fetchval("SELECT last_ok FROM oncall_refresh WHERE id = 1"))
    finally:
        await conn.close()


async def test_two_instances_answer_once_and_fail_over(
    tmp_path: Path, pg_url: str, server: FakeMattermost, pd: FakePagerDuty
) -> None:
    inst = Instances(tmp_path, pg_url, server.url, pd)
    try:
        first = inst.start("one")
        await until(lambda: live_connections(server) == 1)
        await until(lambda: lease_holder(pg_url))
        assert (await lease_holder(pg_url) or "").endswith(f":{first.pid}")
        await until(lambda: refreshed(pg_url))  # the leader's first PagerDuty refresh
        second = inst.start("two")
        await until(lambda: live_connections(server) == 2)

        # one `!ic page`, seen by both instances: one PagerDuty incident, one answer
        page = await server.user_post("!ic page")
        await until(lambda: answers(server)[page["id"]] >= 1)
        await asyncio.sleep(0.5)
        assert answers(server)[page["id"]] == 1
        assert len(pd.incidents) == 1

        # commands: each answered exactly once across both instances
        stalk = await server.user_post("!status stalk")
        posts = [await server.user_post(f"!help {i % 3}") for i in range(60)]
        ids = [p["id"] for p in posts] + [stalk["id"]]
        await until(lambda: all(answers(server)[i] >= 1 for i in ids))
        await asyncio.sleep(0.5)  # a second answer would come now
        assert all(answers(server)[i] == 1 for i in ids)

        # kill -9 the leader mid-stream, the status changing at the same moment
        before_kill = [(await server.user_post(f"!help {i}"))["id"] for i in range(20)]
        first.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        inst.status_file.write_text("critical\n")
        after_kill = [(await server.user_post(f"!help {i}"))["id"] for i in range(40)]

        async def survivor_leads() -> bool:
            return (await lease_holder(pg_url) or "").endswith(f":{second.pid}")

        try:
            await until(survivor_leads, timeout=LEASE * 3)
        except AssertionError:
            raise AssertionError(
                f"holder {await lease_holder(pg_url)}, pids {first.pid} {second.pid}"
            ) from None
        failover = time.monotonic() - killed_at
        assert failover <= LEASE + LEASE / 5 + 1.0  # + the test's own polling and a DB round trip

        try:
            await until(lambda: all(answers(server)[i] == 1 for i in after_kill))
        except AssertionError:
            c = answers(server)
            raise AssertionError(
                f"after the kill: {[c[i] for i in after_kill]}; "
                f"before: {[c[i] for i in before_kill]}"
            ) from None
        try:
            await until(lambda: any(changed(p) for p in server.bot_posts()))
        except AssertionError:
            raise AssertionError(
                str(
                    [
                        p["message"][:80]
                        for p in server.bot_posts()
                        if "!status" not in p["message"]
                    ][-5:]
                )
            ) from None
        await asyncio.sleep(LEASE)  # a duplicate (from either instance) would show by now
        counts = answers(server)
        assert all(counts[i] == 1 for i in after_kill)
        assert all(counts[i] <= 1 for i in before_kill)  # never twice
        changes = [p for p in server.bot_posts() if changed(p)]
        assert len(changes) == 1

        # the killed instance comes back as a follower
        third = inst.start("one")
        await until(lambda: live_connections(server) == 2)
        await asyncio.sleep(LEASE)
        assert await survivor_leads()
        late = await server.user_post("!help")
        await until(lambda: answers(server)[late["id"]] == 1)
        await asyncio.sleep(0.5)
        assert answers(server)[late["id"]] == 1
        assert third.poll() is None and second.poll() is None
        lost = [i for i in before_kill if counts[i] == 0]
        print(f"failover {failover:.2f} s; commands in flight at the kill and lost: {len(lost)}")
    finally:
        inst.stop_all()
