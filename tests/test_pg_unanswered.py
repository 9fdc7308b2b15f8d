"""A PostgreSQL that accepts the TCP connection and never answers (a hung server, a
half-open firewall) at start-up: SIGTERM still stops the daemon at once, and without it
start-up fails after the connect timeout with one line that names PostgreSQL and the
timeout (before: SIGTERM was ignored for asyncpg's 60 s, and the cause read "PostgreSQL at
…:" with nothing after it, next to an SQLite path)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self.accepted = asyncio.Event()
        self._held: list[asyncio.StreamWriter] = []
        self.port = 0

    async def _hold(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        self.accepted.set()

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        for writer in self._held:
            writer.transport.abort()
        self._server.close()


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    async with SilentServer() as server:
        yield server


async def start(tmp_path: Path, port: int, timeout: float) -> asyncio.subprocess.Process:
    config = tmp_path / "chatopsd.toml"
    config.write_text(
        f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n'
        f'database = "postgresql://chatopsd@127.0.0.1:{port}/chatopsd"\n'
        f"database_connect_timeout_seconds = {timeout}\n"
        "[console]\nenabled = false\n[control]\nenabled = false\n"
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatopsd",
        "run",
        "--config",
        str(config),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PGPASSWORD": ""},
    )


async def finish(proc: asyncio.subprocess.Process, within: float) -> tuple[int, str]:
    """Its exit code and stderr; killed (and reported as still running) past `within`."""
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        _out, err = await proc.communicate()
        raise AssertionError(f"still running after {within:.0f} s: {err.decode()}") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_sigterm_stops_a_start_up_waiting_on_a_silent_postgresql(
    tmp_path: Path, silent: SilentServer
) -> None:
    # a connect timeout far longer than this test waits: only the stop signal can end it
    proc = await start(tmp_path, silent.port, timeout=300)
    await asyncio.wait_for(silent.accepted.wait(), 60)  # start-up is now waiting on it
    proc.send_signal(signal.SIGTERM)
    code, err = await finish(proc, within=30)
    assert code == 0, err
    assert "stopped during start-up" in err
    assert "Traceback" not in err


async def test_a_silent_postgresql_fails_start_up_after_the_connect_timeout_naming_it(
    tmp_path: Path, silent: SilentServer
) -> None:
    proc = await start(tmp_path, silent.port, timeout=1)
    code, err = await finish(proc, within=60)
    assert code == 1, err
    [line] = [ln for ln in err.splitlines() if ln.startswith("chatopsd: cannot start")]
    assert f"PostgreSQL at postgresql://127.0.0.1:{silent.port}/chatopsd" in line
    assert "no answer within 1 s" in line
    assert "chatopsd.database_connect_timeout_seconds" in line
    assert "state.db" not in line  # the SQLite path has nothing to do with it
    assert "Traceback" not in err
    assert silent.accepted.is_set()
