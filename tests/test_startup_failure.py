"""A start-up failure exits non-zero at once with one clear line: a
corrupt state.db, a read-only state.db, a state.db in a read-only directory (several starts
at once: on a busy machine aiosqlite's thread used to outlive the event loop and add an
"Event loop is closed" traceback) and a busy metrics.listen port. Before, the process
hung forever (aiosqlite's thread left running) and ignored SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatopsd.store.sqlite import SqliteDatabase

ROOT = Path(__file__).resolve().parent.parent


def start(tmp_path: Path, extra: str = "") -> tuple[int | None, str, float]:
    config = tmp_path / "chatopsd.toml"
    config.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n{extra}')
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatopsd", "run", "--config", str(config)],
        cwd=ROOT,
        stdin=subprocess.PIPE,  # held open: a console daemon that started would keep running
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        return None, err, time.monotonic() - began
    _, err = proc.communicate()
    return proc.returncode, err, time.monotonic() - began


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("chatopsd: cannot start")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def test_corrupt_database_exits_at_once(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(os.urandom(8192))
    code, err, took = start(tmp_path)
    assert code is not None and code != 0, f"still running after {took:.1f} s: {err}"
    line = one_line(err)
    assert "state database" in line and "state.db" in line and "not a database" in line


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state.db"

    async def make() -> None:
        db = await SqliteDatabase.open(path)
        await db.close()

    asyncio.run(make())
    if os.geteuid() == 0:
        # root writes through file modes; an immutable file it cannot write
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a read-only file")
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i refused here (filesystem or capability)")
        try:
            yield path
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        yield path
        path.chmod(0o644)


def test_read_only_database_exits_at_once(tmp_path: Path, read_only_db: Path) -> None:
    code, err, took = start(tmp_path)
    assert code is not None and code != 0, f"still running after {took:.1f} s: {err}"
    assert "readonly" in one_line(err)


def test_busy_metrics_port_exits_at_once(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err, took = start(tmp_path, f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    assert code is not None and code != 0, f"still running after {took:.1f} s: {err}"
    line = one_line(err)
    assert f"metrics.listen 127.0.0.1:{port}" in line and "in use" in line


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nothing can be created in (a read-only mount, as far as SQLite sees)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a read-only directory")
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i refused here (filesystem or capability)")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_a_state_db_in_a_read_only_directory_fails_in_one_line_under_load(
    tmp_path: Path, read_only_dir: Path
) -> None:
    config = tmp_path / "chatopsd.toml"
    config.write_text(f'[chatopsd]\nstate_db = "{read_only_dir / "state.db"}"\n')
    # several at once: the loaded machine on which the traceback showed
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "chatopsd", "run", "--config", str(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            raise AssertionError(f"still running: {err}") from None
        assert proc.returncode == 1, err
        line = one_line(err)  # exactly one line, and no traceback after it
        assert "state database" in line and "unable to open database file" in line
        assert err.strip() == line, err


async def test_a_database_that_cannot_be_opened_leaves_no_thread_behind(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        await SqliteDatabase.open(tmp_path)  # a directory, not a database file
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not [t for t in left if "connection_worker" in t.name], left
