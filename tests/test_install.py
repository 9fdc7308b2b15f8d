"""systemd/install.sh, the README's one deploy path, run into a scratch root (DESTDIR), and the
installed service run the way systemd runs it.

It builds a real venv and pip-installs this checkout with its dependencies (from pip's cache
when warm): about 20 s for the first run, a few seconds for a re-run. The service is then
started as the unit says: its `ExecStart` (paths under DESTDIR), its `Environment=`, a
`$CREDENTIALS_DIRECTORY` built from its `LoadCredential=` lines, `$STATE_DIRECTORY` and
`$RUNTIME_DIRECTORY`, `WorkingDirectory=`, a `NOTIFY_SOCKET` (Type=notify) and /dev/null on
stdin, with nothing else from this process's environment.

The venv is built on a system Python: install.sh refuses an interpreter the sandboxed service
could not run (a pyenv build under /root, say), and so do these tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatopsd import config
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "systemd" / "install.sh"
EXEC_START = "/opt/chatopsd/bin/chatopsd run --config /etc/chatopsd/chatopsd.toml"
DOCS = [ROOT / "README.md", ROOT / "config.example.toml", *sorted((ROOT / "docs").glob("*.md"))]
# systemd starts a service with a clean environment: PATH and little else
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _system_python() -> str:
    """A Python 3.11+ every user can run, as the service must (not a per-user build)."""
    found = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if found is not None:
        done = subprocess.run(
            [found, "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            return found
    pytest.skip("no system Python 3.11+ with venv: install.sh refuses per-user interpreters")


def _install(
    dest: Path, python: str, *, ok: bool = True, script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        [str(script)],
        env={**env, "DESTDIR": str(dest), "PYTHON": python},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _readable_dir(prefix: str) -> Path:
    """A temporary directory other users may enter (mkdtemp makes 0700 ones)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(0o755)
    return folder


def _python_copy(folder: Path) -> Path:
    """Another interpreter binary: a copy of the system one. It finds its standard library by
    its compiled-in prefix, so it runs from anywhere; install.sh sees a different path."""
    source = os.path.realpath(_system_python())
    (folder / "bin").mkdir(mode=0o755)
    copy = folder / "bin" / Path(source).name
    shutil.copy2(source, copy)
    return copy


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("destdir")
    yield root, _install(root, _system_python()).stdout
    shutil.rmtree(root, ignore_errors=True)


def test_files_and_modes(dest: tuple[Path, str]) -> None:
    root, out = dest
    unit = root / "etc/systemd/system/chatopsd.service"
    cfg = root / "etc/chatopsd/chatopsd.toml"
    creds = root / "etc/chatopsd/credentials"
    assert _mode(unit) == 0o644
    assert unit.read_text() == (ROOT / "systemd/chatopsd.service").read_text()
    assert _mode(cfg) == 0o644
    assert cfg.read_text() == (ROOT / "config.example.toml").read_text()
    assert creds.is_dir() and _mode(creds) == 0o700
    for name in config.credential_names():
        assert _mode(creds / name) == 0o600, name
        assert (creds / name).read_text() == ""
        assert f"> {creds / name}" in out  # the next steps say which files to write
    assert "systemctl enable --now chatopsd" in out
    # which interpreter the venv runs on is said
    python = os.path.realpath(_system_python())
    assert re.search(rf"with Python 3\.\d+\.\d+ \({re.escape(python)}\)", out), out
    assert os.path.realpath(root / "opt/chatopsd/bin/python") == python
    # a regular install, not an editable one pointing back into the checkout
    site = list((root / "opt/chatopsd/lib").glob("python3*/site-packages"))
    assert len(site) == 1
    assert (site[0] / "chatopsd" / "cli.py").is_file()
    # every migration of both databases, from every folder (the wheel once lacked the
    # PostgreSQL ones: a shared-database install could not start)
    shipped = sorted(p.relative_to(site[0]) for p in (site[0] / "chatopsd").rglob("*.sql"))
    assert shipped == sorted(p.relative_to(ROOT) for p in (ROOT / "chatopsd").rglob("*.sql"))
    assert Path("chatopsd/store/migrations/postgresql/0001_init.sql") in shipped
    assert not list(site[0].glob("__editable__*")) and not list(site[0].glob("*.egg-link"))
    # readable by the service's user whatever root's umask was
    assert _mode(site[0] / "chatopsd" / "cli.py") & 0o004
    # nothing was written into the checkout (pip builds from a staged copy)
    assert not (ROOT / "build").exists()


def test_the_installed_binary_checks_the_installed_config(dest: tuple[Path, str]) -> None:
    root, _ = dest
    cfg = root / "etc/chatopsd/chatopsd.toml"
    done = subprocess.run(
        [str(root / "opt/chatopsd/bin/chatopsd"), "check-config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{cfg}: OK (platforms: console only)"


def test_exec_start_names_the_installed_binary(dest: tuple[Path, str]) -> None:
    root, _ = dest
    text = (root / "etc/systemd/system/chatopsd.service").read_text()
    starts = re.findall(r"^ExecStart=(.*)$", text, re.M)
    assert starts == [EXEC_START]
    binary = root / starts[0].split()[0].lstrip("/")
    assert binary.is_file() and os.access(binary, os.X_OK)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_verifies_the_installed_unit(dest: tuple[Path, str], tmp_path: Path) -> None:
    """verify insists that ExecStart's binary exists. The installed unit names /opt/chatopsd
    (where it runs for real); the scratch copy under DESTDIR is the same file with that path
    prefixed, so verify checks the binary install.sh actually made."""
    root, _ = dest
    unit = root / "etc/systemd/system/chatopsd.service"
    text = unit.read_text().replace("ExecStart=/opt/", f"ExecStart={root}/opt/")
    copy = tmp_path / "chatopsd.service"
    copy.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and (done.stdout + done.stderr).strip() == "", (
        done.stdout + done.stderr
    )


# -- the installed service, run as systemd runs it ------------------------------------------


def _unit_settings(root: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (root / "etc/systemd/system/chatopsd.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _under(root: Path, arg: str) -> str:
    """A path the unit names, as installed under DESTDIR."""
    return str(root / arg.lstrip("/")) if arg.startswith(("/opt/", "/etc/")) else arg


@dataclass
class Service:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    credentials: Path
    notify: socket.socket


@pytest.fixture
def service(dest: tuple[Path, str]) -> Iterator[Service]:
    """What systemd would set up for one start of the installed unit."""
    root, _ = dest
    unit = _unit_settings(root)
    [exec_start] = unit["ExecStart"]
    argv = [_under(root, arg) for arg in shlex.split(exec_start)]
    base = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))  # AF_UNIX paths are short
    state, runtime, creds = base / "state", base / "run", base / "creds"
    state.mkdir(mode=0o700)
    runtime.mkdir(mode=0o755)
    creds.mkdir(mode=0o700)
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8"}
    for line in unit.get("Environment", []):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            env[key] = value
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(base / "notify"))
    env |= {
        "STATE_DIRECTORY": str(state),
        "RUNTIME_DIRECTORY": str(runtime),
        "CREDENTIALS_DIRECTORY": str(creds),
        "NOTIFY_SOCKET": str(base / "notify"),
    }
    [workdir] = unit["WorkingDirectory"]
    assert workdir == "/var/lib/chatopsd"  # the StateDirectory: $STATE_DIRECTORY here
    try:
        yield Service(argv, env, state, creds, notify)
    finally:
        notify.close()
        shutil.rmtree(base, ignore_errors=True)


def _load_credentials(root: Path, creds: Path) -> list[str]:
    """Copy each `LoadCredential=ID:PATH` file to $CREDENTIALS_DIRECTORY/ID, as systemd does
    (it refuses to start the service when one is missing)."""
    names = []
    for line in _unit_settings(root)["LoadCredential"]:
        name, _, source = line.partition(":")
        target = creds / name
        shutil.copyfile(_under(root, source), target)
        target.chmod(0o400)
        names.append(name)
    return names


def test_the_shipped_config_fails_at_once_with_the_line_to_fix(
    dest: tuple[Path, str], service: Service
) -> None:
    """`systemctl enable --now chatopsd` right after install.sh: no platform is configured
    and stdin is /dev/null. The service used to say "ready" and exit 0 at once."""
    root, _ = dest
    _load_credentials(root, service.credentials)
    service.notify.setblocking(False)
    done = subprocess.run(
        service.argv,
        env=service.env,
        cwd=service.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78  # EX_CONFIG: RestartPreventExitStatus=78, no restart loop
    assert "78" in _unit_settings(root)["RestartPreventExitStatus"]
    config_file = root / "etc/chatopsd/chatopsd.toml"
    assert done.stderr.splitlines() == [
        "chatopsd: nothing can reach this daemon: no chat platform is configured and stdin "
        "is not a terminal or a pipe; add a [slack], [discord], [mattermost] or [teams] "
        f"section to {config_file} (docs/slack.md, docs/discord.md, docs/mattermost.md, "
        "docs/teams.md)"
    ]
    with pytest.raises(BlockingIOError):
        service.notify.recv(4096)  # never "ready"


async def test_a_slack_config_with_tokens_in_the_environment_starts(
    dest: tuple[Path, str], service: Service, tmp_path: Path
) -> None:
    """The tokens in the environment (a drop-in's Environment=) while every credential file
    is as install.sh left it, empty: an empty credential used to hide the variable."""
    root, _ = dest
    for name in _load_credentials(root, service.credentials):
        assert (service.credentials / name).read_text() == "", name
    slack = FakeSlack()
    await slack.start()
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[slack]\napi_url = "{slack.api_url}"\n')
    argv = [*service.argv[:-1], str(cfg)]  # --config: this one instead of the shipped one
    env = service.env | {
        "CHATOPSD_SLACK_APP_TOKEN": APP_TOKEN,
        "CHATOPSD_SLACK_BOT_TOKEN": BOT_TOKEN,
    }
    service.notify.settimeout(60)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=service.cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ready = await asyncio.to_thread(service.notify.recv, 4096)
        assert ready.startswith(b"READY=1"), ready
        await slack.wait_for(lambda: slack.connections >= 1, timeout=30)
        ctl = [str(root / "opt/chatopsd/bin/chatopsd"), "ctl", "--config", str(cfg), "health"]
        health = await _until_healthy(ctl, env)
        assert "slack: ready" in health.stdout
        assert health.stdout.splitlines()[-1] == "health: healthy"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await slack.stop()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert "chatopsd stopped" in log
    assert APP_TOKEN not in log and BOT_TOKEN not in log


async def _until_healthy(ctl: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`chatopsd ctl health` (finding the socket by $RUNTIME_DIRECTORY) until it exits 0: the
    Slack connector turns ready just after its websocket says hello."""
    for _ in range(100):
        done = await asyncio.to_thread(
            subprocess.run, ctl, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode == 0:
            return done
        assert done.returncode == 1, done.stdout + done.stderr  # degraded while connecting
        await asyncio.sleep(0.1)  # polling for a state to appear, not timing anything
    raise AssertionError(f"never healthy: {done.stdout}{done.stderr}")


def _credentials_the_docs_name() -> set[str]:
    names: set[str] = set()
    for doc in DOCS:
        text = doc.read_text()
        names |= set(re.findall(r"/etc/chatopsd/credentials/([a-z][a-z0-9_]*)", text))
        names |= set(re.findall(r"\$CREDENTIALS_DIRECTORY/([a-z][a-z0-9_]*)", text))
        names |= set(re.findall(r"\bcredential `?([a-z][a-z0-9]*_[a-z0-9_]+)", text))
    return names


# docs/operations.md: an operations script's own token, loaded by a drop-in of the operator's
# for the script to read; it is not the daemon's.
SCRIPT_CREDENTIALS = {"deploy_token"}

PROBE = """
import json, sys
from pathlib import Path
from chatopsd import config
from chatopsd.store.postgres import password_from_environment
cfg = config.load(Path(sys.argv[1]))
got = {f"{s}_{k}": getattr(getattr(cfg, s), k).get_secret_value() for s, k in config.SECRET_KEYS}
got[config.DATABASE_CREDENTIAL] = password_from_environment()
print(json.dumps(got))
"""

EVERY_SECTION = """
[chatopsd]
database = "postgresql://chatopsd@127.0.0.1:5432/chatopsd"
[slack]
[discord]
[mattermost]
url = "https://mattermost.example.com"
[pagerduty]
from_email = "oncall-bot@example.com"
service_id = "PSVC01"
ic_schedules = ["PSCHED1"]
[teams]
app_id = "00000000-0000-4000-8000-0000000000b1"
tenant_id = "11111111-2222-4333-8444-555555555555"
relay_namespace = "contoso-ops.servicebus.windows.net"
relay_path = "chatopsd"
relay_key_name = "chatopsd-listen"
[statuspage]
page_id = "p1"
[tickets]
kind = "github"
project = "acme/infra"
"""


def test_every_credential_the_docs_name_reaches_the_config(
    dest: tuple[Path, str], service: Service, tmp_path: Path
) -> None:
    root, _ = dest
    named = _credentials_the_docs_name()
    operations = (ROOT / "docs/operations.md").read_text()
    for name in SCRIPT_CREDENTIALS:
        assert f"LoadCredential={name}:" in operations and "drop-in" in operations
    named -= SCRIPT_CREDENTIALS
    assert named == set(config.credential_names())  # the docs name every one, and no other
    files = root / "etc/chatopsd/credentials"
    values = {
        name: {"slack_app_token": "xapp-test-cred", "slack_bot_token": "xoxb-test-cred"}.get(
            name, f"placeholder-{name}"
        )
        for name in named
    }
    try:
        for name, value in values.items():
            (files / name).write_text(value + "\n")
        _load_credentials(root, service.credentials)
        cfg = tmp_path / "every-section.toml"
        cfg.write_text(EVERY_SECTION)
        done = subprocess.run(
            [str(root / "opt/chatopsd/bin/python"), "-c", PROBE, str(cfg)],
            env=service.env,
            cwd=service.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == values
    finally:
        for name in named:
            (files / name).write_text("")  # as install.sh left them


# -- upgrades and interpreters ----------------------------------------------------------------


def test_a_rerun_upgrades_in_place_and_keeps_config_and_tokens(dest: tuple[Path, str]) -> None:
    root, _ = dest
    cfg = root / "etc/chatopsd/chatopsd.toml"
    token = root / "etc/chatopsd/credentials/slack_bot_token"
    cfg.write_text('[chatopsd]\nprefix = "?"\n')
    token.write_text("placeholder-not-a-token")
    installed = next((root / "opt/chatopsd/lib").glob("python3*/site-packages")) / "chatopsd"
    (installed / "locations.py").write_text("# an older release\n")
    out = _install(root, _system_python()).stdout
    assert "(kept as it was)" in out
    assert "creating the venv" not in out and "rebuilding" not in out  # same interpreter
    assert cfg.read_text() == '[chatopsd]\nprefix = "?"\n'
    assert token.read_text() == "placeholder-not-a-token" and _mode(token) == 0o600
    # the package was reinstalled from the checkout, not skipped as "already satisfied"
    assert (installed / "locations.py").read_text() == (ROOT / "chatopsd/locations.py").read_text()


def test_a_rerun_with_another_interpreter_rebuilds_the_venv(dest: tuple[Path, str]) -> None:
    """A re-run with PYTHON= used to keep the venv made with the old interpreter."""
    root, _ = dest
    before = os.path.realpath(root / "opt/chatopsd/bin/python")
    folder = _readable_dir("py-")
    try:
        other = _python_copy(folder)
        out = _install(root, str(other)).stdout
        assert (
            f"the venv in {root}/opt/chatopsd was made with {before}: rebuilding it with {other}"
        ) in out
        assert f"({other})" in out
        assert os.path.realpath(root / "opt/chatopsd/bin/python") == str(other)
        assert "(kept as it was)" in out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_interpreter_the_service_cannot_run_is_refused(tmp_path: Path) -> None:
    """The service's user is not root: a Python in a directory it cannot enter would leave it
    failing with "Permission denied" at every start."""
    private = Path(tempfile.mkdtemp(prefix="py-", dir="/tmp"))  # 0700, as mktemp -d makes
    try:
        python = _python_copy(private)
        done = _install(tmp_path / "root", str(python), ok=False)
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"install.sh: the service cannot run this Python: {private} (mode 0700) cannot be "
            "entered by other users; use a Python 3.11+ that every user can run, e.g. "
            f"PYTHON=/usr/bin/python3 {SCRIPT} (apt-get install python3 python3-venv)"
        )
        assert not (tmp_path / "root").exists()  # refused before anything was installed
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_a_per_user_build_under_home_or_root_is_refused(tmp_path: Path) -> None:
    """ProtectHome=yes hides /home, /root and /run/user from the service whatever their
    modes: a pyenv or asdf build there can never run as the service."""
    mine = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    top = next((t for t in ("/home", "/root", "/run/user") if mine.startswith(t + "/")), None)
    if top is None:
        pytest.skip(f"this test's own Python ({mine}) is not a per-user build")
    done = _install(tmp_path / "root", mine, ok=False)
    assert done.returncode == 1
    assert f"{mine} is under {top}, which the service cannot see (ProtectHome=yes)" in done.stderr
    assert not (tmp_path / "root").exists()


def test_without_destdir_a_non_root_user_is_refused() -> None:
    # A copy of the script in a directory anyone may enter: the checkout itself may sit in
    # a directory `nobody` cannot read (a mode-0700 mktemp folder), and bash would then fail
    # with 126 before the script says anything.
    folder = _readable_dir("install-")
    try:
        script = folder / "install.sh"
        shutil.copy2(SCRIPT, script)
        script.chmod(0o755)
        if os.getuid() == 0:
            # as root, try it as nobody (a new user of a fresh server runs it without sudo)
            if shutil.which("runuser") is None:
                pytest.skip("no runuser to drop root")
            cmd = ["runuser", "-u", "nobody", "--", "bash", str(script)]
        else:
            cmd = ["bash", str(script)]
        env = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
        done = subprocess.run(
            cmd, env=env, cwd="/", capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 1, done.stderr
    assert "run as root" in done.stderr and "DESTDIR" in done.stderr
