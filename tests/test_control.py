"""The control socket: owner-only, refuses other users, answers health, send and broadcast."""

from __future__ import annotations

import asyncio
import errno
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
from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from chatopsd.serve import serve
from tests.conftest import make_config

NOBODY = 65534


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


Daemon = Callable[..., Awaitable[None]]


@pytest.fixture
async def daemon(tmp_path: Path, short_dir: Path) -> AsyncIterator[Daemon]:
    """Runs `serve` with a console connector on a pipe that stays open, then the test body."""
    r, w = os.pipe()
    stdin = os.fdopen(r, "r")
    stdout = io.StringIO()

    async def run(body: Callable[[App], Awaitable[None]], allow_uids: list[int] = []) -> None:  # noqa: B006
        cfg = make_config(
            tmp_path,
            console={"enabled": True},
            control={
                "socket": str(short_dir / "c.sock"),
                "broadcast_channels": ["console:ops"],
                "allow_uids": allow_uids,
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


async def test_health_shows_what_each_feature_reports(daemon: Daemon, short_dir: Path) -> None:
    sock = short_dir / "c.sock"

    async def body(app: App) -> None:
        before = (await ask(sock, cmd="health"))["health"]["features"]
        # console only, nothing real configured: the demo source, nobody stalking, and the
        # demo PagerDuty, read at start
        assert before["status"] == {"sources": 1, "stalkers": 0}
        assert before["pagerduty"]["failing_since"] is None
        assert before["pagerduty"]["oncall_as_of"] is not None
        event = Inbound("console", "ops", Actor("ada"), "!status stalk", event_id="stalk-1")
        await app.bus.handle(event)
        after = (await ask(sock, cmd="health"))["health"]["features"]
        assert after["status"] == {"sources": 1, "stalkers": 1}

    await daemon(body)


async def test_send_broadcast_and_bad_requests(daemon: Daemon, short_dir: Path) -> None:
    sock = short_dir / "c.sock"

    async def body(app: App) -> None:
        assert (await ask(sock, cmd="send", platform="console", channel="ops", text="hi ops"))["ok"]
        bad = await ask(sock, cmd="send", platform="irc", channel="x", text="y")
        assert not bad["ok"] and "unknown platform 'irc'" in bad["error"]
        b = await ask(sock, cmd="broadcast", text="maintenance at 5")
        # a destination on an unknown platform is refused by the config (test_check_config)
        assert b["sent"] == ["console:ops"] and b["ok"]
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
    # the daemon is gone: for monitoring that is "failing" (2), and the guess fits
    assert cli.main(["ctl", "--socket", str(short_dir / "c.sock"), "health"]) == 2
    assert "is chatopsd running?" in capsys.readouterr().err
    assert (
        cli.main(["ctl", "--socket", str(short_dir / "c.sock"), "send", "console", "o", "x"]) == 1
    )


async def test_ctl_health_exit_status_follows_the_verdict(
    daemon: Daemon, short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chatopsd.core.errors import JobFailed

    sock = short_dir / "c.sock"

    async def unreachable_source() -> None:
        raise JobFailed("alertmanager: cannot connect")

    async def body(app: App) -> None:
        health = ["ctl", "--socket", str(sock), "health"]
        assert await asyncio.to_thread(cli.main, health) == control.HEALTHY
        assert capsys.readouterr().out.splitlines()[-1] == "health: healthy"
        # a scheduled job that fails (the scheduler's own bookkeeping, as a real poll does)
        await app.scheduler.run("status-poll", unreachable_source)
        assert await asyncio.to_thread(cli.main, health) == control.DEGRADED
        assert capsys.readouterr().out.splitlines()[-1] == "health: degraded (status poll failing)"
        as_json = ["ctl", "--json", "--socket", str(sock), "health"]
        assert await asyncio.to_thread(cli.main, as_json) == control.DEGRADED

    await daemon(body)


def _connector(platform: str, state: str, reason: str = "") -> dict[str, Any]:
    return {"platform": platform, "state": state, "reason": reason}


def _job(failing: bool) -> dict[str, Any]:
    return {"failing_since": "2026-11-23T12:00:00+00:00" if failing else None}


@pytest.mark.parametrize(
    ("connectors", "jobs", "expected"),
    [
        ([_connector("slack", "ready")], {}, (0, [])),
        (
            [_connector("slack", "ready"), _connector("discord", "backing off")],
            {},
            (1, ["discord backing off"]),
        ),
        (
            [_connector("slack", "ready")],
            {"pagerduty-refresh": _job(True), "status-poll": _job(False)},
            (1, ["PagerDuty refresh failing"]),
        ),
        (
            [_connector("slack", "backing off")],
            {},
            (2, ["no connector is ready", "slack backing off"]),
        ),
        (
            [_connector("slack", "ready"), _connector("discord", "failed", "4004: bad token")],
            {"prune-events": _job(True)},
            (2, ["discord failed (4004: bad token)", "job prune-events failing"]),
        ),
        ([], {}, (2, ["no connector is ready"])),
    ],
)
def test_the_health_verdict(
    connectors: list[dict[str, Any]], jobs: dict[str, Any], expected: tuple[int, list[str]]
) -> None:
    assert control.verdict({"connectors": connectors, "jobs": jobs}) == expected


@pytest.mark.parametrize(
    ("code", "says", "never"),
    [
        (errno.ENOENT, "(is chatopsd running?)", "allow_uids"),
        (errno.ECONNREFUSED, "(is chatopsd running?)", "allow_uids"),
        (errno.EACCES, "run as root (sudo), or add uid", "is chatopsd running"),
        (errno.EPERM, "control.allow_uids", "is chatopsd running"),
    ],
)
def test_ctl_says_why_it_could_not_connect(code: int, says: str, never: str) -> None:
    exc = OSError(code, os.strerror(code))
    line = control.connect_failure(Path("/run/chatopsd/control.sock"), "--socket", exc)
    assert line.startswith(f"/run/chatopsd/control.sock (from --socket): {os.strerror(code)}")
    assert says in line and never not in line


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


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
async def test_a_uid_in_allow_uids_gets_in_and_others_still_do_not(
    daemon: Daemon, short_dir: Path
) -> None:
    """control.allow_uids used to be unusable: the socket was 0600, so a listed user got
    "Permission denied" before the daemon could check anything."""
    sock = short_dir / "c.sock"
    os.chmod(short_dir, 0o755)
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the other user")

    def connect_as(uid: int) -> dict[str, Any]:
        done = subprocess.run(
            [python, "-c", CONNECT, str(sock)],
            user=uid,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() != "EACCES", "the file mode kept a listed user out"
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    other = 65533  # an unnamed uid that is not listed

    async def body(app: App) -> None:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o666  # anyone may connect...
        answer = await asyncio.to_thread(connect_as, NOBODY)
        assert answer["ok"] and answer["health"]["connectors"][0]["platform"] == "console"
        refused = await asyncio.to_thread(connect_as, other)  # ...the peer uid decides
        assert refused == {
            "ok": False,
            "error": f"uid {other} is not allowed (control.allow_uids)",
        }

    await daemon(body, allow_uids=[NOBODY])


def test_what_keeps_a_listed_uid_out_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "run"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    identity = control.uid_map("         0          0 4294967295\n")
    assert control.unreachable(closed / "c.sock", [], identity) == []  # nobody listed
    lines = control.unreachable(closed / "c.sock", [1000], identity)
    assert lines[-1] == (
        f"control.allow_uids: {closed} (mode 0700) keeps other users from the socket: make it "
        "searchable by others (chmod o+x; under systemd, RuntimeDirectoryMode=0755)"
    )
    closed.chmod(0o755)
    assert not any(
        str(closed) in line for line in control.unreachable(closed / "c", [1000], identity)
    )
    # systemd's PrivateUsers=yes: only root and the service's own uid are mapped
    private = control.uid_map("0 0 1\n61234 61234 1\n")
    assert control.inside_uid(61234, private) == 61234
    assert control.inside_uid(1000, private) is None
    # listing nobody must not admit every unmapped caller, who all show up as the overflow uid
    assert control.inside_uid(65534, private) is None
    lines = control.unreachable(closed / "c", [1000, 0], private)
    hidden = [ln for ln in lines if "told apart" in ln]
    assert len(hidden) == 1
    assert hidden[0].startswith("control.allow_uids: uid 1000 cannot be told apart")
    assert "PrivateUsers=no" in hidden[0]
    # a shifted map (a container's): the daemon sees host uid 101000 as 1000
    assert control.inside_uid(101000, control.uid_map("0 100000 65536")) == 1000


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
    first = ControlServer(app.health(), path, outbox=app.outbox)
    await first.start()  # replaces the stale file
    second = ControlServer(app.health(), path, outbox=app.outbox)
    try:
        with pytest.raises(OSError, match="another chatopsd answers"):
            await second.start()
        assert (await ask(path, cmd="health"))["ok"]  # the first still answers
    finally:
        await first.close()
        await app.stop()
