"""A daemon nothing can reach refuses to start: no chat platform configured and a stdin that
can never say anything (closed, or /dev/null as systemd gives it). It says in one line which
file to edit and exits 78 (EX_CONFIG), before telling systemd it is ready. A pipe or a file is
input: `printf '!ic\\n' | chatopsd run` still answers and exits 0."""

from __future__ import annotations

import os
import pty
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatopsd.connectors.console import no_input

ROOT = Path(__file__).resolve().parent.parent


def test_dev_null_and_a_closed_stdin_are_no_input(tmp_path: Path) -> None:
    with open(os.devnull) as devnull:
        assert no_input(devnull)
    assert no_input(None)  # Python's sys.stdin when fd 0 was closed at start
    closed = open(os.devnull)  # noqa: SIM115 - closed on purpose
    closed.close()
    assert no_input(closed)


def test_a_pipe_a_file_and_a_terminal_are_input(tmp_path: Path) -> None:
    r, w = os.pipe()
    with os.fdopen(r) as pipe, os.fdopen(w, "w"):
        assert not no_input(pipe)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with empty.open() as file:
        assert not no_input(file)  # `chatopsd run < commands.txt`, even an empty one
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave) as terminal:
            assert not no_input(terminal)
    finally:
        os.close(master)


@pytest.fixture
def notify() -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="n-", dir="/tmp")
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def _run(
    tmp_path: Path, *args: str, stdin: int | None, text: str | None = None, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatopsd", "run", *args],
        stdin=stdin,
        input=text,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=60,
        check=False,
    )


def test_no_platform_and_dev_null_exits_78_with_one_line_before_ready(
    tmp_path: Path, notify: tuple[socket.socket, str]
) -> None:
    sock, path = notify
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text('[console]\nformat = "text"\n')
    done = _run(
        tmp_path, "--config", str(cfg), stdin=subprocess.DEVNULL, env={"NOTIFY_SOCKET": path}
    )
    assert done.returncode == 78, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "no chat platform is configured" in lines[0]
    assert f"add a [slack], [discord], [mattermost] or [teams] section to {cfg}" in lines[0]
    with pytest.raises(BlockingIOError):
        sock.recv(4096)  # systemd never heard READY=1
    assert not (tmp_path / "chatopsd.db").exists()  # nor was a database made


def test_without_a_config_the_line_says_to_give_one(tmp_path: Path) -> None:
    done = _run(tmp_path, stdin=subprocess.DEVNULL, env={})
    assert done.returncode == 78
    assert "to a config file given with --config" in done.stderr


def test_an_explicitly_enabled_console_on_dev_null_is_refused_too(tmp_path: Path) -> None:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text("[console]\nenabled = true\n")
    done = _run(tmp_path, "--config", str(cfg), stdin=subprocess.DEVNULL, env={})
    assert done.returncode == 78, done.stderr


@pytest.mark.parametrize(("text", "answer"), [("!ic\n", "Incident Commanders"), ("", "")])
def test_a_pipe_is_input_even_an_empty_one(tmp_path: Path, text: str, answer: str) -> None:
    """The README's `printf '!ic\\n' | .venv/bin/chatopsd run`."""
    done = _run(tmp_path, stdin=None, text=text, env={})
    assert done.returncode == 0, done.stderr
    assert answer in done.stdout
