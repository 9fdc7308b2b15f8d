"""The control socket: owner-only, refuses other users, answers health, send and broadcast."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd import cli, control
from chatopsd.app import App, Io, serve
from tests.conftest import make_config

NOBODY = 65534


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


Daemon = Callable[[Callable[[App], Awaitable[None]]], Awaitable[None]]


@pytest.fixture
async def daemon(tmp_path: Path, short_dir: Path) -> AsyncIterator[Daemon]:
    """Runs `serve` with a console connector on a pipe that stays open, then the test body."""
    r, w = os.pipe()
    stdin = os.fdopen(r, "r")
    stdout = io.StringIO()

    async def run(body: Callable[[App], Awaitable[None]]) -> None:
        cfg = make_config(
            tmp_path,
            console={"enabled": True},
            control={
                "socket": str(short_dir / "c.sock"),
                "broadcast_channels": ["console:ops", "nowhere:x"],
            },
        )
        done: list[asyncio.Task[None]] = []

        def ready(app: App) -> None:
            async def go() -> None:
                try:
                    await body(app)
                finally:
                    app.stopping.set()

            done.append(asyncio.get_running_loop().create_task(go(), name="test-body"))

        await asyncio.wait_for(serve(cfg, Io(stdin=stdin, stdout=stdout), on_ready=ready), 20)
        await done[0]  # re-raise the body's assertion errors

    run.stdout = stdout  # type: ignore[attr-defined]
    yield run
    os.close(w)  # EOF ends the console's reader thread


def ask(path: Path, **payload: Any) -> Awaitable[dict[str, Any]]:
    return asyncio.to_thread(control.request, path, payload)


async def test_health_and_owner_only_mode(daemon: Daemon, short_dir: Path) -> None:
    sock = short_dir / "c.sock"

    async def body(app: App) -> None:
        mode = stat.S_IMODE(sock.stat().st_mode)
        assert stat.S_ISSOCK(sock.stat().st_mode) and mode == 0o600
        answer = await ask(sock, cmd="health")
        assert answer["ok"]
        h = answer["health"]
        assert h["connectors"][0]["platform"] == "console"
        assert h["connectors"][0]["state"] == "ready"
        assert h["queue_depth"] == 0
        assert "prune-events" in h["jobs"]
        lines = control.render_health(h)
        assert lines[0].startswith("console: ready")
        assert any(ln.startswith("queue depth: 0") for ln in lines)

    await daemon(body)
    assert not sock.exists()  # removed on shutdown


async def test_send_broadcast_and_bad_requests(daemon: Daemon, short_dir: Path) -> None:
    sock = short_dir / "c.sock"

    async def body(app: App) -> None:
        assert (await ask(sock, cmd="send", platform="console", channel="ops", text="hi ops"))["ok"]
        bad = await ask(sock, cmd="send", platform="irc", channel="x", text="y")
        assert not bad["ok"] and "unknown platform 'irc'" in bad["error"]
        b = await ask(sock, cmd="broadcast", text="maintenance at 5")
        assert b["sent"] == ["console:ops"] and not b["ok"]
        assert "unknown platform 'nowhere'" in b["errors"][0]
        assert "unknown command" in (await ask(sock, cmd="reboot"))["error"]
        raw = await asyncio.to_thread(_raw, sock, b"not json\n")
        assert "send one JSON line" in raw

    await daemon(body)
    out = daemon.stdout.getvalue()  # type: ignore[attr-defined]
    assert "hi ops" in out and "maintenance at 5" in out


def _raw(path: Path, data: bytes) -> str:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(data)
        return s.recv(4096).decode()


async def test_cli_ctl(daemon: Daemon, short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = short_dir / "c.sock"

    async def body(app: App) -> None:
        code = await asyncio.to_thread(cli.main, ["ctl", "--socket", str(sock), "health"])
        assert code == 0
        code = await asyncio.to_thread(
            cli.main, ["ctl", "--socket", str(sock), "send", "console", "ops", "from cli"]
        )
        assert code == 0

    await daemon(body)
    out = capsys.readouterr().out
    assert "console: ready" in out and "sent to console:ops" in out
    assert cli.main(["ctl", "--socket", str(short_dir / "c.sock"), "health"]) == 1
    assert "is chatopsd running?" in capsys.readouterr().err


CONNECT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
try:
    s.sendall(b'{"cmd": "health"}\\n')
except BrokenPipeError:
    pass  # the server refuses at once, maybe before we wrote: its answer is still readable
print(s.recv(4096).decode())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
async def test_other_users_are_refused(daemon: Daemon, short_dir: Path) -> None:
    sock = short_dir / "c.sock"
    os.chmod(short_dir, 0o755)
    # The venv's interpreter lives under /root; the client only needs the standard library.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the other user")

    def as_nobody() -> str:
        done = subprocess.run(
            [python, "-c", CONNECT, str(sock)],
            user=NOBODY,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    async def body(app: App) -> None:
        # 1. the file mode keeps them out
        assert await asyncio.to_thread(as_nobody) == "EACCES"
        # 2. and if the mode is loosened, the peer-credential check still refuses
        sock.chmod(0o666)
        answer = json.loads(await asyncio.to_thread(as_nobody))
        assert answer["ok"] is False
        # nobody is also the overflow uid: the refusal explains PrivateUsers=yes too
        assert answer["error"].startswith(f"uid {NOBODY} is not allowed (control.allow_uids)")

    await daemon(body)


async def test_stale_socket_is_replaced_but_a_live_one_is_not(
    tmp_path: Path, short_dir: Path
) -> None:
    import socket as socket_mod

    from chatopsd.control import ControlServer

    app = App(make_config(tmp_path, console={"enabled": False}))
    await app.start()
    path = short_dir / "c.sock"
    stale = socket_mod.socket(socket_mod.AF_UNIX)
    stale.bind(str(path))  # bound but not listening: what a kill -9 leaves behind
    stale.close()
    first = ControlServer(app, path)
    await first.start()  # replaces the stale file
    second = ControlServer(app, path)
    try:
        with pytest.raises(OSError, match="another chatopsd answers"):
            await second.start()
        assert (await ask(path, cmd="health"))["ok"]  # the first still answers
    finally:
        await first.close()
        await app.stop()
