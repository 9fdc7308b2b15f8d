"""The console as people and scripts use it: `chatopsd run` under a pseudo-terminal (banner,
prompt, logs in a file, hints with the prefix, edits as "↻ updated:", each message once, no id
needed with one incident open) and through a pipe (replies only, logs on stderr)."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatopsd import __version__

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "> "


class Terminal:
    """`chatopsd run` with a pty as its stdin, stdout and stderr, like a person's shell."""

    def __init__(self, cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatopsd", "run"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            close_fds=True,
        )
        os.close(slave)
        self.seen = ""

    def until_prompt(self, timeout: float = 20.0) -> str:
        """Everything printed up to the next prompt (the prompt excluded)."""
        start = len(self.seen)
        while not self.seen.endswith(PROMPT) or len(self.seen) == start:
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, f"no prompt within {timeout} s; saw {self.seen[start:]!r}"
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.seen[start:].removesuffix(PROMPT)

    def type(self, line: str) -> str:
        os.write(self.master, line.encode() + b"\n")
        out = self.until_prompt()
        echo = line + "\n"
        assert out.startswith(echo), out  # the terminal echoes what was typed
        return out[len(echo) :]

    def close(self) -> int:
        os.write(self.master, b"\x04")  # Ctrl-D at the prompt
        code = self.proc.wait(20)
        os.close(self.master)
        return code


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    yield term
    if term.proc.poll() is None:
        term.proc.kill()
        term.proc.wait(10)


def test_a_terminal_gets_a_banner_a_prompt_and_no_log_lines(
    terminal: Terminal, tmp_path: Path
) -> None:
    banner = terminal.until_prompt()
    assert f"chatopsd {__version__}" in banner
    assert "platforms: console" in banner and "Ctrl-D quits" in banner
    assert "!help" in banner
    log_file = tmp_path / "chatopsd.log"
    assert f"Logs: {log_file}" in banner
    answer = terminal.type("!ic")
    assert "Incident Commanders on call" in answer
    # a hint is what to type: the prefix is kept
    assert "[Page Incident Commanders: !ic page]" in answer
    assert terminal.close() == 0
    screen = terminal.seen
    assert not re.search(r"\b(INFO|DEBUG|WARNING)\b", screen), screen
    logged = log_file.read_text()
    assert "chatopsd ready" in logged and "command 'ic'" in logged


def test_ctrl_c_at_the_prompt_leaves_the_shell_a_fresh_line(terminal: Terminal) -> None:
    terminal.until_prompt()
    terminal.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    assert terminal.proc.wait(20) == 0
    terminal.until_prompt()  # read what was printed on the way out, to the end
    assert terminal.seen.endswith(PROMPT + "\n"), terminal.seen[-40:]


def test_an_incident_on_the_console_prints_each_message_once(terminal: Terminal) -> None:
    terminal.until_prompt()
    declared = terminal.type('!incident declare --sev 2 "API slow"')
    assert "thread" not in declared  # a console user can never enter a thread
    assert declared.count("INC-2026-0001 [SEV-2] API slow") == 2  # announcement, status
    assert declared.count("declared (SEV-2)") == 1
    # exactly one incident open: no id needed
    acked = terminal.type("!incident ack looking at it")
    assert "INC-2026-0001 acknowledged" in acked
    # the pinned status is edited in place: on a console, a marked reprint
    assert "↻ updated: 🟠 INC-2026-0001 [SEV-2] API slow" in acked
    assert "(edited" not in acked
    resolved = terminal.type("!incident resolve rolled back")
    assert resolved.count("INC-2026-0001 resolved: API slow") == 1, resolved
    assert terminal.close() == 0


def test_through_a_pipe_only_replies_are_printed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatopsd", "run"],
        input="!ic\n!incident declare x\n!incident ack\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "chatopsd 0" not in out and not out.startswith(PROMPT)  # no banner, no prompt
    assert "[Page Incident Commanders: !ic page]" in out
    assert "INC-2026-0001 acknowledged" in out and "↻ updated:" in out
    assert out.count("declared (SEV-3)") == 1
    assert "INFO" not in out and "chatopsd ready" in done.stderr  # logs stay on stderr
    assert not (tmp_path / "chatopsd.log").exists()


def test_what_a_run_in_the_checkout_leaves_behind_is_ignored_by_git() -> None:
    """Running the daemon from a clone (the README's quick start) leaves its database, its
    socket and, on a terminal, its log file there: none of them is something to commit."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["chatopsd.db", "chatopsd.db-wal", "chatopsd.sock", "chatopsd.log"]
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert sorted(done.stdout.split()) == sorted(names), done.stdout + done.stderr
