"""Several instances on one PostgreSQL, and the PostgreSQL server stops: every check says so.

Three real `chatopsd run` processes share a private PostgreSQL 15 cluster (its own, since this
test stops it) and connect to one fake Mattermost. One is `kill -9`ed: the others list it as
dead, with when it was last seen. Then the PostgreSQL server stops. `chatopsd ctl health` on
each survivor (the real CLI, through its control socket):

- exits 2 (failing) and names the database as failing, though Mattermost is still connected;
- says "leader" only while the lease is really held: once it has run out, no instance calls
  itself leader, and a follower that cannot read the lease says "leader: unknown" (it used to
  name itself leader while calling itself a follower);
- keeps the dead instance listed.

The logs say no "take-over recovered" while the database is down: a singleton job that cannot
run because the database is unreachable fails, it is not "ok" (before, a follower's no-op
counted as a success and "recovered" the job the moment the lease was lost).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.mattermost import TOKEN, FakeMattermost
from tests.fixtures.mattermost import server  # noqa: F401 (fixtures)
from tests.pg_cluster import BIN, SUPERUSER, Cluster, start_cluster, stop_cluster

LEASE = 1.0
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A cluster of this test's own: it is stopped in the middle of the test."""
    found = start_cluster()
    try:
        yield found
    finally:
        if found.process.poll() is None:
            stop_cluster(found)
        else:
            shutil.rmtree(found.datadir, ignore_errors=True)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Control sockets need a short path (108 bytes at most)."""
    path = Path(tempfile.mkdtemp(prefix="cd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Instances:
    def __init__(self, tmp: Path, sockets: Path, url: str, mattermost: str) -> None:
        self.tmp, self.sockets, self.url, self.mattermost = tmp, sockets, url, mattermost
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    def config(self, name: str) -> Path:
        return self.tmp / name / "chatopsd.toml"

    async def start(self, name: str) -> None:
        home = self.tmp / name
        home.mkdir()
        self.config(name).write_text(
            f'[chatopsd]\nstate_db = "{home / "state.db"}"\ndatabase = "{self.url}"\n'
            f'lease_seconds = {LEASE}\ninstance = "{name}"\n'
            f'[control]\nsocket = "{self.sockets / name}.sock"\n'
            f'[mattermost]\nurl = "{self.mattermost}"\ntoken = "{TOKEN}"\n'
            "heartbeat_seconds = 1.0\n"
        )
        log = (home / "log").open("ab")
        self.procs[name] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatopsd",
            "run",
            "--config",
            str(self.config(name)),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.tmp / name / "log").read_text(errors="replace")

    async def health(self, name: str) -> tuple[int, str]:
        """`chatopsd ctl health` against the instance: its exit status and output."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatopsd",
            "ctl",
            "health",
            "--config",
            str(self.config(name)),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async def until_health(self, name: str, ok: object, timeout: float, what: str) -> str:
        """Ask `ctl health` until `ok(code, text)`; the last answer on timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            code, text = await self.health(name)
            if ok(code, text):  # type: ignore[operator]
                return text
            if loop.time() > end:
                raise AssertionError(f"{name}: {what} not seen in {timeout} s:\n{text}")
            await asyncio.sleep(0.3)

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def instances(
    tmp_path: Path, short_dir: Path, cluster: Cluster, server: FakeMattermost
) -> AsyncIterator[Instances]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    where = ["-h", cluster.host, "-p", str(cluster.port), "-U", SUPERUSER]
    created = await asyncio.create_subprocess_exec(str(BIN / "createdb"), *where, name)
    assert await created.wait() == 0
    found = Instances(tmp_path, short_dir, cluster.url(name), server.url)
    try:
        yield found
    finally:
        await found.stop_all()


def _pid_of(text: str, name: str) -> str:
    match = re.search(rf"\b({name}:\d+)", text)
    assert match, text
    return match.group(1)


async def test_database_down_every_instance_says_so(instances: Instances, cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        await instances.start(name)
    healthy = await instances.until_health(
        "a",
        lambda code, text: code == 0 and len(_listed(text)) == 3,
        60,
        "three healthy instances",
    )
    assert "mattermost: ready" in healthy
    c = _pid_of(healthy, "c")

    # c is killed: it stays listed as dead, with when it was last seen
    instances.procs["c"].kill()
    await instances.procs["c"].wait()
    text = await instances.until_health(
        "a", lambda code, text: f"{c} dead, last seen" in text, 20, "c listed as dead"
    )
    assert re.search(rf"{re.escape(c)} dead, last seen \d\d:\d\d:\d\d UTC", text), text
    assert c not in _listed(text)

    # the database stops
    logs_before = {name: len(instances.log(name)) for name in ("a", "b")}
    cluster.process.terminate()
    await asyncio.to_thread(cluster.process.wait, 30)

    def failing(code: int, text: str) -> bool:
        return code == 2 and "instance" in text and ": leader;" not in text

    for name in ("a", "b"):
        text = await instances.until_health(name, failing, 20, "exit 2, no leader")
        lines = text.splitlines()
        database = [line for line in lines if line.startswith("database ")]
        assert database and ": failing (" in database[0], text
        assert "mattermost: ready" in text  # the chat still works: only the database fails
        verdict = lines[-1]
        assert verdict.startswith("health: failing (") and "database " in verdict, verdict
        assert "unreachable" in verdict
        own = [line for line in lines if line.startswith(f"instance {name}:")]
        assert own == [own[0]] and "follower (leader: unknown)" in own[0], text
        assert f"{c} dead, last seen" in own[0]  # the dead instance is still listed

    # a few take-over sweeps later, still down: nothing "recovered"
    await asyncio.sleep(3 * LEASE)
    for name in ("a", "b"):
        code, text = await instances.health(name)
        assert code == 2, text
        said = instances.log(name)[logs_before[name] :]
        assert "recovered" not in said, said[-3000:]
        assert "job take-over failing" in said or "take-over" in text, said[-3000:]


def _listed(text: str) -> list[str]:
    """The live instances of `ctl health`'s instance line."""
    for line in text.splitlines():
        if line.startswith("instance ") and "instances: " in line:
            listed = line.split("instances: ", 1)[1].split(";", 1)[0]
            return [i.strip() for i in listed.split(",") if i.strip()]
    return []
