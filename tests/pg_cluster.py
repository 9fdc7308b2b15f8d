"""A private PostgreSQL 15 cluster for the tests: initdb in a temporary directory, a random
port on 127.0.0.1, its socket in that directory, torn down at the end of the session.

initdb and postgres refuse to run as root; as root (CI) the cluster belongs to the unprivileged
`postgres` user the Debian package creates (run through `runuser`). Skips visibly when the
binaries are absent (.ci/run installs the `postgresql` package, so CI never skips).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatopsd.store.db import Database

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "chatopsd"


@dataclass
class Cluster:
    host: str
    port: int
    datadir: Path
    process: subprocess.Popen[bytes]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def start_cluster(*, fsync: bool = False) -> Cluster:
    """fsync off for the tests (speed); the benchmark turns it on (honest figures)."""
    if not (BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 is not installed ({BIN}); .ci/run installs `postgresql`")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to own the cluster")
    base = Path(tempfile.mkdtemp(prefix="chatopsd-pg-"))
    if os.geteuid() == 0:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    datadir = base / "data"
    subprocess.run(
        _as_owner(
            [str(BIN / "initdb"), "-D", str(datadir), "-U", SUPERUSER, "-A", "trust", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    process = subprocess.Popen(
        _as_owner(
            [
                str(BIN / "postgres"),
                "-D",
                str(datadir),
                "-p",
                str(port),
                "-k",
                str(base),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"fsync={'on' if fsync else 'off'}",
                "-c",
                "max_connections=200",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return Cluster("127.0.0.1", port, base, process)
        if process.poll() is not None:
            break
        time.sleep(0.05)  # waiting for a child process to come up, not measuring anything
    process.kill()
    raise RuntimeError("the test PostgreSQL cluster did not start")


def stop_cluster(cluster: Cluster) -> None:
    cluster.process.terminate()
    try:
        cluster.process.wait(10)
    except subprocess.TimeoutExpired:
        cluster.process.kill()
        cluster.process.wait()
    shutil.rmtree(cluster.datadir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty database on the session's cluster, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    where = ["-h", pg_cluster.host, "-p", str(pg_cluster.port), "-U", SUPERUSER]
    subprocess.run([str(BIN / "createdb"), *where, name], check=True, capture_output=True)
    yield pg_cluster.url(name)
    subprocess.run(
        [str(BIN / "dropdb"), *where, "--force", "--if-exists", name],
        check=True,
        capture_output=True,
    )


BACKENDS = ["sqlite", "postgresql"]


@contextlib.asynccontextmanager
async def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The database a parametrized contract test runs on: SQLite on disk, or a fresh database
    on the private PostgreSQL cluster."""
    from chatopsd.store.backend import open_database

    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    db = await open_database(url, tmp_path / "state.db")
    try:
        yield db
    finally:
        await db.close()


def integrity_errors() -> tuple[type[BaseException], ...]:
    """What either database raises when a constraint refuses a row."""
    import sqlite3

    import asyncpg

    return (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)
