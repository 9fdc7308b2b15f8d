"""`chatopsd doctor` against protocol-level fakes on 127.0.0.1: all green, then each way to fail."""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatopsd import cli, doctor
from chatopsd.store.sqlite import SqliteDatabase
from tests.fakes.probe_targets import (
    DISCORD,
    MATTERMOST,
    PAGERDUTY,
    SLACK_APP,
    SLACK_BOT,
    ServerThread,
    Targets,
)

TOKENS = (SLACK_BOT, SLACK_APP, DISCORD, MATTERMOST, PAGERDUTY)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the CA file doctor is told to trust)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return crt, key


@dataclass
class Env:
    server: ServerThread
    targets: Targets
    crt: Path
    tmp: Path

    def config(self, **overrides: str) -> Path:
        s = self.server.url
        parts = {
            "chatopsd": f'[chatopsd]\nstate_db = "{self.tmp / "state" / "state.db"}"\n',
            "slack": f'[slack]\napp_token = "{SLACK_APP}"\nbot_token = "{SLACK_BOT}"\n'
            f'api_url = "{s}/slack/api/"\n',
            "discord": f'[discord]\ntoken = "{DISCORD}"\napi_url = "{s}/discord/api/v10"\n',
            "mattermost": f'[mattermost]\nurl = "https://127.0.0.1:{self.server.tls_port}"\n'
            f'token = "{MATTERMOST}"\nca_file = "{self.crt}"\n',
            "pagerduty": f'[pagerduty]\napi_token = "{PAGERDUTY}"\napi_url = "{s}/pd"\n'
            'from_email = "oncall-bot@example.com"\nservice_id = "PSVC01"\n'
            'ic_schedules = ["PSCHED1"]\nresponder_schedules = ["PSCHED2"]\n',
            "status": "[status]\n"
            f'[[status.sources]]\nname = "am"\nkind = "alertmanager"\nurl = "{s}/am"\n'
            f'[[status.sources]]\nname = "prom"\nkind = "prometheus"\nurl = "{s}/prom"\n'
            'query = "up == 0"\n'
            f'[[status.sources]]\nname = "page"\nkind = "http"\nurl = "{s}/health"\n'
            'field = "status.indicator"\n'
            '[[status.sources]]\nname = "script"\nkind = "command"\nargv = ["true"]\n',
        }
        parts.update(overrides)
        path = self.tmp / "chatopsd.toml"
        path.write_text("".join(parts.values()))
        return path

    def run(self, path: Path, timeout: float = 10.0) -> tuple[int, list[str]]:
        out = io.StringIO()
        code = doctor.main(path, out=out, env={}, timeout_seconds=timeout)
        text = out.getvalue()
        for token in TOKENS:
            assert token not in text
        return code, text.splitlines()


@pytest.fixture
def env(cert: tuple[Path, Path], tmp_path: Path) -> Iterator[Env]:
    crt, key = cert
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(crt), str(key))
    targets = Targets()
    # the service's database, as its first start leaves it (doctor never makes one)
    asyncio.run(_make_database(tmp_path / "state" / "state.db"))
    with ServerThread(targets, tls) as server:
        yield Env(server, targets, crt, tmp_path)


async def _make_database(path: Path) -> None:
    await (await SqliteDatabase.open(path)).close()


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def line(lines: list[str], name: str) -> str:
    found = [ln for ln in lines if ln[2:].startswith(name + ":")]
    assert len(found) == 1, (name, lines)
    return found[0]


def test_everything_passes(env: Env) -> None:
    code, lines = env.run(env.config())
    assert code == 0, "\n".join(lines)
    for name in (
        "config",
        "state database",
        "slack bot token",
        "slack socket mode",
        "discord token",
        "discord intents",
        "mattermost TLS",
        "mattermost token",
        "pagerduty token",
        "pagerduty from_email",
        "pagerduty service_id",
        "pagerduty ic_schedules",
        "pagerduty responder_schedules",
        "status source am",
        "status source prom",
        "status source page",
        "status source script",
    ):
        assert line(lines, name).startswith("✓"), name
    assert lines[-1] == "17 passed, 0 failed"  # every ✓ line counted, config's too
    assert_summary_matches(lines)
    assert "GET /pd/services/PSVC01" in env.targets.requests


def assert_summary_matches(lines: list[str]) -> None:
    """The summary counts what the lines show (it once printed "1 passed, 7 failed" beside
    2 ✓ lines)."""
    passed = sum(ln.startswith("✓ ") for ln in lines)
    failed = sum(ln.startswith("✗ ") for ln in lines)
    assert lines[-1] == f"{passed} passed, {failed} failed", lines


def test_unreachable_discord_is_blamed_on_the_network_not_the_token(env: Env) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = env.config(
        discord=f'[discord]\ntoken = "{DISCORD}"\napi_url = "http://127.0.0.1:{port}/api/v10"\n'
    )
    code, lines = env.run(path)
    assert code == 1
    bad = line(lines, "discord token")
    assert bad.startswith("✗ discord token: http://127.0.0.1:")
    assert "cannot connect" in bad and "check the network" in bad
    assert "credential" not in bad and "reset" not in bad.lower()  # not the token's fault
    assert_summary_matches(lines)


def test_bad_slack_bot_token(env: Env) -> None:
    path = env.config(
        slack=f'[slack]\napp_token = "{SLACK_APP}"\nbot_token = "xoxb-test-wrong"\n'
        f'api_url = "{env.server.url}/slack/api/"\n'
    )
    code, lines = env.run(path)
    assert code == 1
    bad = line(lines, "slack bot token")
    assert bad.startswith("✗ slack bot token: invalid_auth:")
    assert "credential slack_bot_token" in bad and "xoxb-test-wrong" not in bad
    assert line(lines, "slack socket mode").startswith("✓")


def test_slack_missing_scopes_and_socket_mode(env: Env) -> None:
    env.targets.slack_scopes = "chat:write"
    env.targets.socket_mode = False
    code, lines = env.run(env.config())
    assert code == 1
    bad = line(lines, "slack bot token")
    assert "missing 12 of the 13 scopes the enabled features need: app_mentions:read, " in bad
    assert "app_mentions:read for the app_mention event" in bad
    assert "enable Socket Mode" in line(lines, "slack socket mode")


def test_discord_bad_token_and_missing_intent(env: Env) -> None:
    env.targets.discord_flags = 0
    code, lines = env.run(env.config())
    assert code == 1
    assert "message content intent is off" in line(lines, "discord intents")
    path = env.config(
        discord='[discord]\ntoken = "nope-nope-nope"\n'
        f'api_url = "{env.server.url}/discord/api/v10"\n'
    )
    code, lines = env.run(path)
    assert code == 1
    assert "HTTP 401: the token is not accepted" in line(lines, "discord token")
    assert "credential discord_token" in line(lines, "discord token")
    assert_summary_matches(lines)


def test_mattermost_untrusted_certificate_and_plain_http(env: Env) -> None:
    port = env.server.tls_port
    code, lines = env.run(
        env.config(
            mattermost=f'[mattermost]\nurl = "https://127.0.0.1:{port}"\ntoken = "{MATTERMOST}"\n'
        )
    )
    assert code == 1
    assert "TLS certificate not trusted" in line(lines, "mattermost token")
    code, lines = env.run(
        env.config(mattermost=f'[mattermost]\nurl = "{env.server.url}"\ntoken = "{MATTERMOST}"\n')
    )
    assert code == 1
    assert "use https://" in line(lines, "mattermost TLS")
    assert line(lines, "mattermost token").startswith("✓")


def test_pagerduty_missing_service_schedule_and_user(env: Env) -> None:
    env.targets.pd_services.clear()
    env.targets.pd_schedules.discard("PSCHED2")
    env.targets.pd_users = ["someone-else@example.com"]
    code, lines = env.run(env.config())
    assert code == 1
    assert line(lines, "pagerduty service_id") == (
        "✗ pagerduty service_id: PSVC01: HTTP 404: not found; check pagerduty.service_id"
    )
    assert line(lines, "pagerduty ic_schedules").startswith("✓")
    assert "PSCHED2: HTTP 404" in line(lines, "pagerduty responder_schedules")
    assert "is not a PagerDuty user" in line(lines, "pagerduty from_email")


def test_pagerduty_bad_token(env: Env) -> None:
    path = env.config(
        pagerduty=f'[pagerduty]\napi_token = "pd-wrong-token"\napi_url = "{env.server.url}/pd"\n'
        'from_email = "a@b.c"\nservice_id = "PSVC01"\nic_schedules = ["PSCHED1"]\n'
    )
    code, lines = env.run(path)
    assert code == 1
    assert "HTTP 401" in line(lines, "pagerduty token")
    assert "credential pagerduty_api_token" in line(lines, "pagerduty token")


def test_unreachable_status_source_and_failing_command(env: Env) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    path = env.config(
        status="[status]\n"
        f'[[status.sources]]\nname = "am"\nkind = "alertmanager"\nurl = "http://127.0.0.1:{dead}"\n'
        '[[status.sources]]\nname = "script"\nkind = "command"\nargv = ["false"]\n'
        'exit_map = {"0" = "NORMAL"}\n'
        '[[status.sources]]\nname = "gone"\nkind = "command"\nargv = ["no-such-cmd-xyz"]\n'
    )
    code, lines = env.run(path)
    assert code == 1
    assert "cannot connect" in line(lines, "status source am")
    assert "exit status 1 is not in exit_map" in line(lines, "status source script")
    assert "not found" in line(lines, "status source gone")


def test_state_database_not_writable(env: Env, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, lines = env.run(env.config(chatopsd=f'[chatopsd]\nstate_db = "{blocker}/x/state.db"\n'))
    assert code == 1
    assert line(lines, "state database").startswith("✗")


def test_the_service_database_is_read_and_left_as_it_was(env: Env) -> None:
    state = env.tmp / "state"
    before = _files(state)
    code, lines = env.run(env.config(slack="", discord="", mattermost="", pagerduty="", status=""))
    assert code == 0, lines
    assert line(lines, "state database") == (
        f"✓ state database: {state / 'state.db'} (from chatopsd.state_db): readable, schema current"
    )
    assert _files(state) == before  # no -wal, no -shm, no write


@pytest.mark.parametrize("where", ["state_db", "STATE_DIRECTORY"])
def test_a_wrong_database_path_is_reported_and_never_created(
    env: Env, tmp_path: Path, where: str
) -> None:
    wrong = tmp_path / "typo" / "state.db"
    cfg = env.config(slack="", discord="", mattermost="", pagerduty="", status="", chatopsd="")
    if where == "state_db":
        cfg.write_text(f'[chatopsd]\nstate_db = "{wrong}"\n')
        environ = {}
    else:
        environ = {"STATE_DIRECTORY": str(wrong.parent)}
    out = io.StringIO()
    code = doctor.main(cfg, out=out, env=environ)
    assert code == 1
    source = "chatopsd.state_db" if where == "state_db" else "$STATE_DIRECTORY"
    assert line(out.getvalue().splitlines(), "state database") == (
        f"✗ state database: {wrong} (from {source}) does not exist: not the service's "
        "database, or the service has not started yet (it creates it at its first start). "
        "doctor creates none: give --config with chatopsd.state_db, or run it where the "
        "daemon runs"
    )
    assert not wrong.parent.exists()  # neither the file nor its directory


def test_doctor_in_a_random_directory_creates_nothing_there(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without chatopsd.state_db or $STATE_DIRECTORY the rule ends at ./chatopsd.db: doctor
    used to create that empty file wherever it ran, and `audit` then read it."""
    if Path("/var/lib/chatopsd/state.db").exists():
        pytest.skip("this host runs the service: the rule finds its database first")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = env.config(slack="", discord="", mattermost="", pagerduty="", status="", chatopsd="")
    out = io.StringIO()
    assert doctor.main(cfg, out=out, env={}) == 1
    assert "chatopsd.db (from the working directory) does not exist" in out.getvalue()
    assert list(elsewhere.iterdir()) == []


def test_cli_doctor_exit_status(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.config(slack="", discord="", mattermost="", pagerduty="", status="")
    assert cli.main(["doctor", "--config", str(path)]) == 0
    assert "✓ state database" in capsys.readouterr().out
    bad = env.tmp / "bad.toml"
    bad.write_text("[slack]\nbot_token = 3\n")
    assert cli.main(["doctor", "--config", str(bad)]) == 2
    assert "slack.bot_token" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("500", "HTTP 500"),
        ("429", "HTTP 429: rate limited"),
        ("garbage", "not JSON"),
        ("slow", "timeout"),
        ("drop", "ServerDisconnectedError"),
        ("empty", "field 'status.indicator' is not in the answer"),
    ],
)
def test_status_source_failures(env: Env, how: str, expected: str) -> None:
    path = env.config(
        status="[status]\n"
        f'[[status.sources]]\nname = "page"\nkind = "http"\nurl = "{env.server.url}/broken/{how}"\n'
        'field = "status.indicator"\n'
    )
    code, lines = env.run(path, timeout=0.5)
    assert code == 1
    assert expected in line(lines, "status source page")


def test_slack_scopes_are_those_the_enabled_features_need(env: Env) -> None:
    """A token with 3 of the manifest's scopes used to get "scopes ok". Each missing scope
    is named with what needs it, and a feature that is switched on adds its own."""
    env.targets.slack_scopes = "chat:write,app_mentions:read,channels:history"
    code, lines = env.run(env.config())
    assert code == 1
    bad = line(lines, "slack bot token")
    for scope, why in [
        ("channels:manage", "conversations.create"),  # incident channels (on by default)
        ("pins:write", "pins.add"),
        ("im:write", "conversations.open"),  # [pagerduty]: `!pd link`, shift reminders
        ("users:read.email", "users.info"),
        ("reactions:read", "the reaction_added event"),
        ("commands", "slash commands"),
    ]:
        assert f"{scope} for {why}" in bad, bad
    assert "usergroups:write" not in bad  # no pagerduty.slack_usergroups
    assert "scopes ok" not in "\n".join(lines)

    # the manifest's scopes but usergroups:write, with on-call user groups configured
    env.targets.slack_scopes = Targets().slack_scopes.replace(",usergroups:write", "")
    pd = env.config().read_text().split("[pagerduty]\n", 1)[1].split("[status]", 1)[0]
    groups = f'[pagerduty]\nslack_usergroups = {{ PSCHED1 = "S0001" }}\n{pd}'
    code, lines = env.run(env.config(pagerduty=groups))
    assert code == 1
    assert "missing 1 of the 14 scopes" in line(lines, "slack bot token")
    assert "usergroups:write for usergroups.users.update" in line(lines, "slack bot token")
    # without incident channels, PagerDuty or user groups: the base scopes are enough
    env.targets.slack_scopes = (
        "app_mentions:read,channels:history,groups:history,im:history,mpim:history,"
        "chat:write,commands,reactions:read,users:read,users:read.email"
    )
    code, lines = env.run(
        env.config(pagerduty="", incidents="[incidents]\ncreate_channels = false\n")
    )
    assert line(lines, "slack bot token").endswith("all 10 scopes needed"), lines
