"""systemd/install.sh, the README's one deploy path, run into a scratch root (DESTDIR).

It builds a real venv and pip-installs this checkout with its dependencies (from pip's cache
when warm): about half a minute per run, and the test runs it twice to prove a re-run
upgrades in place without touching the operator's config or tokens.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "systemd" / "install.sh"
EXEC_START = "/opt/chatopsd/bin/chatopsd run --config /etc/chatopsd/chatopsd.toml"
TOKENS = (
    "slack_app_token",
    "slack_bot_token",
    "discord_token",
    "mattermost_token",
    "pagerduty_api_token",
)


def _install(dest: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        [str(SCRIPT)],
        env={**env, "DESTDIR": str(dest)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("destdir")
    yield root, _install(root).stdout
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
    for name in TOKENS:
        assert _mode(creds / name) == 0o600, name
        assert (creds / name).read_text() == ""
        assert f"> {creds / name}" in out  # the next steps say which files to write
    assert "systemctl enable --now chatopsd" in out
    # a regular install, not an editable one pointing back into the checkout
    site = list((root / "opt/chatopsd/lib").glob("python3*/site-packages"))
    assert len(site) == 1
    assert (site[0] / "chatopsd" / "cli.py").is_file()
    assert (site[0] / "chatopsd" / "store" / "migrations" / "0001_init.sql").is_file()
    assert not list(site[0].glob("__editable__*")) and not list(site[0].glob("*.egg-link"))
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


def test_a_rerun_upgrades_in_place_and_keeps_config_and_tokens(dest: tuple[Path, str]) -> None:
    root, _ = dest
    cfg = root / "etc/chatopsd/chatopsd.toml"
    token = root / "etc/chatopsd/credentials/slack_bot_token"
    cfg.write_text('[chatopsd]\nprefix = "?"\n')
    token.write_text("placeholder-not-a-token")
    installed = next((root / "opt/chatopsd/lib").glob("python3*/site-packages")) / "chatopsd"
    (installed / "locations.py").write_text("# an older release\n")
    out = _install(root).stdout
    assert "(kept as it was)" in out
    assert cfg.read_text() == '[chatopsd]\nprefix = "?"\n'
    assert token.read_text() == "placeholder-not-a-token" and _mode(token) == 0o600
    # the package was reinstalled from the checkout, not skipped as "already satisfied"
    assert (installed / "locations.py").read_text() == (ROOT / "chatopsd/locations.py").read_text()


def test_without_destdir_a_non_root_user_is_refused() -> None:
    if os.getuid() == 0:
        # as root, try it as nobody (a new user of a fresh server runs it without sudo)
        if shutil.which("runuser") is None:
            pytest.skip("no runuser to drop root")
        cmd = ["runuser", "-u", "nobody", "--", "bash", str(SCRIPT)]
    else:
        cmd = ["bash", str(SCRIPT)]
    env = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "run as root" in done.stderr and "DESTDIR" in done.stderr
