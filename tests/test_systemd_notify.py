"""sd_notify against a real AF_UNIX datagram socket, as systemd would listen on it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.serve import serve
from chatopsd.systemd import Notifier, Watchdog
from tests.conftest import FakeClock, make_config
from tests.fakes.mattermost import TOKEN, FakeMattermost
from tests.fixtures.mattermost import server  # noqa: F401 (fixtures)
from tests.waiting import loop_barrier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_unset_socket_is_a_noop() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_usec == 0


def test_abstract_socket() -> None:
    name = f"chatopsd-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready("starting")
        assert sock.recv(4096) == b"READY=1\nSTATUS=starting"
        n.close()
    finally:
        sock.close()


def test_missing_socket_does_not_raise(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.stopping() is False


def test_watchdog_pid_of_another_process_disables(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    mine = Notifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert other.watchdog_usec == 0
    assert mine.watchdog_usec == 1_000_000


async def test_watchdog_pings_from_its_loop_and_says_when_the_loop_was_blocked(
    listener: tuple[socket.socket, str], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    wd = Watchdog(notifier, monotonic=clock.monotonic, sleep=clock.sleep)
    assert wd.interval == pytest.approx(0.05)
    wd.start()
    try:
        for _ in range(3):
            await loop_barrier()  # the watchdog sleeps on the clock...
            clock.advance(0.05)  # ...until its interval has passed
        await loop_barrier()
        assert drain(sock) == ["WATCHDOG=1"] * 3
        clock.advance(0.05)  # due, but the loop has not run since: a blocked loop pings not
        assert drain(sock) == []
        await loop_barrier()
        assert drain(sock) == ["WATCHDOG=1"]  # and pings resume once it runs again
        with caplog.at_level(logging.WARNING, logger="chatopsd.systemd"):
            await loop_barrier()
            clock.advance(3.05)  # a handler held the loop for 3 s
            await loop_barrier()
        assert drain(sock) == ["WATCHDOG=1"]
        assert "event loop was blocked for about 3.0 s" in caplog.text
    finally:
        await wd.stop()


async def test_watchdog_refuses_to_ping_when_unhealthy(
    listener: tuple[socket.socket, str], clock: FakeClock
) -> None:
    sock, path = listener
    healthy = True
    wd = Watchdog(
        Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000"}),
        healthy=lambda: healthy,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    wd.start()
    try:
        await loop_barrier()
        clock.advance(0.03)
        await loop_barrier()
        assert drain(sock) == ["WATCHDOG=1"]
        healthy = False
        for _ in range(3):
            clock.advance(0.03)
            await loop_barrier()
        assert drain(sock) == []
        assert wd.pings == 1
        healthy = True
        clock.advance(0.03)
        await loop_barrier()
        assert drain(sock) == ["WATCHDOG=1"]
    finally:
        await wd.stop()


async def test_serve_sends_ready_watchdog_stopping_in_order(
    listener: tuple[socket.socket, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    cfg = make_config(tmp_path, console={"enabled": False})
    seen_at_ready: list[list[str]] = []

    def ready(app: App) -> None:
        # READY=1 comes after the store is open and the scheduler runs
        assert app.scheduler.jobs
        seen_at_ready.append(drain(sock))
        asyncio.get_running_loop().call_later(0.3, app.stopping.set)

    await asyncio.wait_for(serve(cfg, Io(), on_ready=ready), 10)
    messages = seen_at_ready[0] + drain(sock)
    kinds = [m.splitlines()[0] for m in messages]
    assert kinds[0] == "READY=1"
    assert "STATUS=no connectors" in messages[0]
    assert "WATCHDOG=1" in kinds
    assert kinds[-1] == "STOPPING=1"
    assert kinds.index("WATCHDOG=1") < kinds.index("STOPPING=1")


async def test_sighup_reloads_what_it_safely_can(
    listener: tuple[socket.socket, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    cfg_file = tmp_path / "chatopsd.toml"
    db = tmp_path / "state.db"
    cfg_file.write_text(
        f'[chatopsd]\nstate_db = "{db}"\n[console]\nenabled = false\n[ratelimit]\nper_minute = 30\n'
    )
    from chatopsd import config

    cfg = config.load(cfg_file)
    result: dict[str, object] = {}

    def ready(app: App) -> None:
        cfg_file.write_text(
            f'[chatopsd]\nstate_db = "{db}"\nprefix = "?"\nlog_level = "debug"\n'
            '[console]\nenabled = false\n[ratelimit]\nper_minute = 5\n[roles]\nic = ["u1"]\n'
        )
        os.kill(os.getpid(), signal.SIGHUP)

        async def later() -> None:
            await asyncio.sleep(0.2)
            result["config"] = app.config
            app.stopping.set()

        result["task"] = asyncio.get_running_loop().create_task(later(), name="test-later")

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        await asyncio.wait_for(serve(cfg, Io(), on_ready=ready, config_path=cfg_file), 10)
    finally:  # the reload set up logging for real; give pytest its handlers back
        root.handlers[:], root.level = handlers, level
    kinds = [m.splitlines()[0] for m in drain(sock)]
    assert kinds[:3] == ["READY=1", "RELOADING=1", "READY=1"]
    new = result["config"]
    assert isinstance(new, config.Config)
    assert new.ratelimit.per_minute == 5
    assert new.roles == {"ic": ["u1"]}
    assert new.chatopsd.prefix == "!"  # needs a restart: not applied


def test_real_process_under_uvloop(listener: tuple[socket.socket, str], tmp_path: Path) -> None:
    """`chatopsd run` as systemd starts it: READY, watchdog pings, then STOPPING on SIGTERM."""
    import subprocess
    import sys

    sock, path = listener
    sock.setblocking(True)
    sock.settimeout(10)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "s.db"}"\n[console]\nenabled = false\n')
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "200000",
        "RUNTIME_DIRECTORY": str(tmp_path),
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert sock.recv(4096).startswith(b"READY=1\n")
        assert sock.recv(4096) == b"WATCHDOG=1"
        proc.send_signal(signal.SIGTERM)
        rest = []
        while not rest or rest[-1] != b"STOPPING=1":
            rest.append(sock.recv(4096))
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate(timeout=10)
    assert "chatopsd stopped" in err.decode()


async def test_status_follows_a_connector_state_change_at_once(
    listener: tuple[socket.socket, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: FakeMattermost,
) -> None:
    """STATUS= used to wait for the 5-second tick: `systemctl status` showed a connector's
    old state for seconds after it changed. Each change is pushed at once now: here the
    Mattermost socket drops under a running daemon, and reconnects."""
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)  # no watchdog: only the tick, or a push
    section = {"url": server.url, "token": TOKEN, "heartbeat_seconds": 1.0}
    cfg = make_config(tmp_path, mattermost=section, console={"enabled": False})
    seen: list[str] = []
    took: list[float] = []

    async def status_with(text: str, loop: asyncio.AbstractEventLoop) -> float:
        start = loop.time()
        while loop.time() - start < 3.0:
            for message in drain(sock):
                seen.extend(line for line in message.splitlines() if line.startswith("STATUS="))
            if any(text in line for line in seen):
                return loop.time() - start
            await asyncio.sleep(0.02)
        return float("inf")

    def ready(app: App) -> None:
        async def watch() -> None:
            loop = asyncio.get_running_loop()
            try:
                await status_with("mattermost: ready", loop)
                seen.clear()
                server.drop()
                took.append(await status_with("mattermost: connecting", loop))
                took.append(await status_with("mattermost: ready", loop))
            finally:
                app.stopping.set()

        asyncio.get_running_loop().create_task(watch())

    await asyncio.wait_for(serve(cfg, Io(), on_ready=ready), 15)
    assert len(took) == 2 and max(took) < 2.0, (took, seen)  # not the 5-second tick
