"""`chatopsd ctl` and `chatopsd audit` find a systemd-run daemon's socket and database by the
daemon's own rules (locations.py), with --config/--socket before or after the subcommand."""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from chatopsd import cli, config, control, locations
from chatopsd.locations import UnitDirs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def unit_root() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="loc-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatopsd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def _wait_for(stream: IO[bytes], needle: bytes, timeout: float = 30.0) -> None:
    """Read the raw pipe until `needle` shows (no text wrapper: its buffer would hide lines
    from select)."""
    seen = b""
    fd = stream.fileno()
    while needle not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {needle!r} within {timeout} s; saw {seen!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"daemon exited; saw {seen!r}"
        seen += chunk


@pytest.fixture
def systemd_like_daemon(unit_root: Path, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A daemon run as the unit runs it: no state_db, no control.socket in its config; only
    $STATE_DIRECTORY and $RUNTIME_DIRECTORY (what StateDirectory=/RuntimeDirectory= set)."""
    (unit_root / "state").mkdir(mode=0o700)
    (unit_root / "run").mkdir(mode=0o700)
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text("[console]\nenabled = true\nformat = 'jsonl'\n")
    env = {
        **os.environ,
        "STATE_DIRECTORY": str(unit_root / "state"),
        "RUNTIME_DIRECTORY": str(unit_root / "run"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
        cwd=tmp_path,  # not where the database is: the working directory must not matter
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        _wait_for(proc.stderr, b"control socket at")
        line = json.dumps({"text": "!help", "event_id": "e1", "actor": "ada"}) + "\n"
        proc.stdin.write(line.encode())
        _wait_for(proc.stdout, b'"text"')  # answered, so audited
        yield cfg, env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_ctl_and_audit_find_the_daemon_from_its_environment(
    systemd_like_daemon: tuple[Path, dict[str, str]], unit_root: Path
) -> None:
    cfg, env = systemd_like_daemon
    # --config after the subcommand (what the issue saw refused), no --socket
    health = _cli("ctl", "health", "--config", str(cfg), env=env)
    assert health.returncode == 0, health.stderr
    assert "console: ready" in health.stdout
    # and before it
    health = _cli("--config", str(cfg), "ctl", "--json", "health", env=env)
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["ok"] is True
    audit = _cli("audit", "--json", "--config", str(cfg), env=env)
    assert audit.returncode == 0, audit.stderr
    rows = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(r["actor_name"], r["text"]) for r in rows] == [("ada", "!help")]
    assert (unit_root / "state" / "state.db").exists()
    assert (unit_root / "run" / "control.sock").is_socket()


def test_a_client_without_the_environment_finds_the_unit_directories(
    systemd_like_daemon: tuple[Path, dict[str, str]], unit_root: Path
) -> None:
    """An operator's shell has no $STATE_DIRECTORY: the client falls back to the unit's
    directories (here pointed at the daemon's), and only because the daemon's files are there."""
    cfg, _ = systemd_like_daemon
    loaded = config.load(cfg, env={})
    unit = UnitDirs(state=unit_root / "state", runtime=unit_root / "run", config=cfg)
    found = locations.locate(loaded, env={}, client=True, unit=unit)
    assert found.state_db == unit_root / "state" / "state.db"
    assert found.socket == unit_root / "run" / "control.sock"
    assert found.socket_source == "the unit's RuntimeDirectory"
    answer = control.request(found.socket, {"cmd": "health"})
    assert answer["ok"] and answer["health"]["connectors"][0]["platform"] == "console"
    # the daemon itself never falls back to them: it would take over another daemon's files
    daemon_side = locations.locate(loaded, env={}, unit=unit)
    assert daemon_side.state_db == Path("chatopsd.db")
    assert locations.default_config(None, unit=unit) == cfg


def test_a_missing_daemon_is_reported_with_where_we_looked(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[chatopsd]\nstate_db = '{tmp_path / 'none.db'}'\n")
    done = _cli("ctl", "health", "--config", str(cfg))
    assert done.returncode == 2  # for monitoring: failing
    assert "from next to the database" in done.stderr and "is chatopsd running?" in done.stderr
    done = _cli("audit", "--config", str(cfg))
    assert done.returncode == 1
    assert f"no state database at {tmp_path / 'none.db'} (from chatopsd.state_db)" in done.stderr


def test_every_subcommand_and_option_has_a_help_line() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, where: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, child in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{where} {name}")
                    walk(child, f"{where} {name}")
            elif not action.help:
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")

    walk(cli.build_parser(), "chatopsd")
    assert missing == []
    # and --help prints for each of them
    assert "--socket" in _cli("ctl", "health", "--help").stdout
