"""The Teams daemon as an operator runs it: a process started from a config file whose two
secrets come from `$CREDENTIALS_DIRECTORY`, answering through the fake relay without opening a
listening socket (TEAMS.md §9 checks 11 and 12); `check-config`; `doctor`'s probes; the app
package."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from chatopsd.connectors import teams
from chatopsd.connectors.teams.manifest import PERMISSIONS
from tests.conftest import transport
from tests.fakes import teams_bot
from tests.fakes.teams_bot import FakeBotService
from tests.fakes.teams_relay import FakeRelay
from tests.teams_helpers import APP_ID, APP_PASSWORD, raw_section, section

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("app_id", "tenant_id", "relay_namespace", "relay_path", "relay_key_name")


def toml(tables: dict[str, dict[str, Any]]) -> str:
    """TOML of simple values (JSON's strings, numbers, booleans and lists are TOML's)."""
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def write_config(tmp_path: Path, table: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """The config without the two secrets, which go in a credentials directory."""
    creds = tmp_path / "credentials"
    creds.mkdir(exist_ok=True)
    (creds / "teams_app_password").write_text(table.pop("app_password") + "\n")
    (creds / "teams_relay_key").write_text(table.pop("relay_key") + "\n")
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(toml({"chatopsd": {"state_db": str(tmp_path / "state.db")}, "teams": table}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPSD_")}
    env["CREDENTIALS_DIRECTORY"] = str(creds)
    return cfg, env


def listening_inodes() -> set[str]:
    """Socket inodes in state LISTEN, IPv4 and IPv6 (/proc/net/tcp*: column st 0A)."""
    found: set[str] = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A":
                found.add(cols[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    found: set[str] = set()
    for fd in (Path("/proc") / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


async def test_the_daemon_listens_on_no_port_and_reads_its_secrets_from_credentials(
    tmp_path: Path, relay: FakeRelay, bot: FakeBotService
) -> None:
    # the check can fail: this test process, which runs the fakes, does listen
    assert socket_inodes(os.getpid()) & listening_inodes()
    cfg, env = write_config(tmp_path, raw_section(relay.listen_url, bot.section()))
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await relay.wait_for(lambda: relay.listeners, timeout=30)  # the relay key was read
        activity = bot.activity("<at>chatopsd</at> help")
        status, *_ = await bot.post_activity(relay.endpoint, activity)
        assert status == 200
        loop = asyncio.get_running_loop()
        end = loop.time() + 15
        while not bot.activities and loop.time() < end:
            await asyncio.sleep(0.05)
        (answer,) = bot.activities  # the app password was read: a token, then the post
        assert answer[1] == f"{teams_bot.CHANNEL};messageid={activity['id']}"
        assert bot.token_requests[0]["client_secret"] == APP_PASSWORD
        sockets = socket_inodes(proc.pid)
        assert sockets, "the daemon has its relay and Connector connections open"
        assert not sockets & listening_inodes(), "the daemon opened a listening socket"
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert APP_PASSWORD.encode() not in err and b"c2VjcmV0" not in err  # no secret logged


def check_config(cfg: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatopsd", "check-config", str(cfg)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_reads_the_credentials_and_flags_missing_teams_keys(
    tmp_path: Path,
) -> None:
    table = raw_section("ws://127.0.0.1:9/$hc/chatopsd", {})
    cfg, env = write_config(tmp_path, dict(table))
    done = check_config(cfg, env)
    assert done.returncode == 0, done.stderr
    assert "platforms: teams" in done.stdout
    # without the credentials the two secrets are missing, and said so by their key
    bare = {k: v for k, v in env.items() if k != "CREDENTIALS_DIRECTORY"}
    done = check_config(cfg, bare)
    assert done.returncode == 2
    assert "teams.app_password" in done.stderr and "teams.relay_key" in done.stderr
    for key in REQUIRED:
        partial = {k: v for k, v in table.items() if k != key}
        cfg.write_text(toml({"teams": partial}))
        done = check_config(cfg, env)
        assert done.returncode == 2 and f"teams.{key}" in done.stderr, (key, done.stderr)
    assert APP_PASSWORD not in done.stderr


async def test_doctor_probes_token_keys_relay_and_says_no_listener(
    relay: FakeRelay, bot: FakeBotService
) -> None:
    cfg = section(relay.listen_url, **bot.section())
    async with transport() as http:
        results = await teams.PLATFORM.probe(cfg, http, frozenset())
    lines = {r.name: r for r in results}
    assert [r.name for r in results] == [
        "teams token",
        "teams keys",
        "teams relay",
        "teams listener",
    ]
    assert lines["teams token"].ok and lines["teams keys"].ok and lines["teams relay"].ok
    assert "1 endorsed" in lines["teams keys"].detail
    assert not lines["teams listener"].ok and "no listener" in lines["teams listener"].detail
    assert relay.handshakes and not relay.listeners  # doctor's own handshake was closed


async def test_doctor_sees_a_running_listener_and_names_a_wrong_key(
    relay: FakeRelay, bot: FakeBotService
) -> None:
    from chatopsd.connectors.teams.relay import RelayListener, RelayResponse
    from chatopsd.core.ports import SystemClock

    async def refuse(_request: object) -> RelayResponse:
        return RelayResponse(401)

    cfg = section(relay.listen_url, **bot.section())
    listener = RelayListener(cfg, refuse, clock=SystemClock())
    task = asyncio.create_task(listener.run())
    try:
        await relay.wait_listeners(1)
        async with transport() as http:
            good = {r.name: r for r in await teams.PLATFORM.probe(cfg, http, frozenset())}
            wrong = section(
                relay.listen_url, **bot.section(), relay_key="d3Jvbmcta2V5", app_password="nope"
            )
            bad = {r.name: r for r in await teams.PLATFORM.probe(wrong, http, frozenset())}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await listener.close()
    assert good["teams listener"].ok, good["teams listener"].detail
    assert not bad["teams relay"].ok and "teams_relay_key" in bad["teams relay"].detail
    assert not bad["teams token"].ok and "teams_app_password" in bad["teams token"].detail
    assert "nope" not in bad["teams token"].detail


def test_the_manifest_command_writes_the_app_package(tmp_path: Path) -> None:
    cfg, env = write_config(tmp_path, raw_section("ws://127.0.0.1:9/$hc/chatopsd", {}))
    out = tmp_path / "chatopsd-teams.zip"
    done = subprocess.run(
        [sys.executable, "-m", "chatopsd", "teams", "manifest", "--config", str(cfg),
         "--out", str(out), "--website", "https://ops.example.com"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(zf.read("manifest.json"))
        icons = {name: zf.read(name) for name in ("color.png", "outline.png")}
    assert manifest["id"] == manifest["bots"][0]["botId"] == APP_ID
    assert manifest["webApplicationInfo"]["id"] == APP_ID
    assert set(manifest["bots"][0]["scopes"]) == {"team", "personal", "groupChat"}
    rsc = manifest["authorization"]["permissions"]["resourceSpecific"]
    assert (
        {p["name"] for p in rsc}
        == set(PERMISSIONS)
        == {
            "ChannelMessage.Read.Group",
            "Channel.Create.Group",
        }
    )
    assert manifest["developer"]["websiteUrl"] == "https://ops.example.com"
    for name, size in (("color.png", 192), ("outline.png", 32)):
        data = icons[name]
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20]), int.from_bytes(data[20:24])
        assert (width, height) == (size, size)
    refused = subprocess.run(
        [sys.executable, "-m", "chatopsd", "teams", "manifest", "--app-id", APP_ID,
         "--out", str(out), "--website", "http://ops.example.com"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "https" in refused.stderr
