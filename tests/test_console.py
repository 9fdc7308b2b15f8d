"""The console as people and scripts use it: `chatopsd run` on a terminal (a tmux pane: banner,
prompt, line editing, history across runs, Tab completion, logs in a file, output arriving
above the line being typed, hints with the prefix, edits as "↻ updated:", each message once)
and through a pipe or a jsonl script (replies only, logs on stderr, never rate limited, a line
back for every line in)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatopsd import __version__

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "> "
TMUX = shutil.which("tmux")
WAIT = 30.0  # seconds for the screen to show what a step expects (a loaded 2-core machine)


class Screen:
    """`chatopsd run` in a tmux pane: a real terminal emulator (it answers the cursor
    position requests prompt_toolkit sends, and keeps the screen as a person sees it),
    typed into with keys and read back as text. The tmux server is the test's own (a private
    socket, `-L`), and is killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        assert TMUX is not None
        conf = tmp_path / "tmux.conf"
        # keep the pane after the daemon exits, to read its last words and exit status
        conf.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")
        self.tmux = [TMUX, "-L", f"chatopsd-test-{uuid.uuid4().hex[:12]}", "-f", str(conf)]
        self.env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        self.runs = 0
        self.socket: Path | None = None

    def start(self, cwd: Path) -> None:
        """Run the daemon in a new window, as a shell would (then print its exit status)."""
        self.runs += 1
        window = f"run{self.runs}"
        daemon = [sys.executable, "-m", "chatopsd", "run"]
        # The shell outlives a Ctrl-C meant for the daemon (a trap is not inherited: the
        # daemon gets SIGINT as usual) and says how it ended, on the line after the cursor.
        wrapper = ["sh", "-c", 'trap : INT; "$@"; echo "[exit $?]"', "sh", *daemon]
        where = ["-c", str(cwd), "-e", f"PYTHONPATH={ROOT}"]
        if self.runs == 1:
            size = ["-x", "160", "-y", "50"]
            self._tmux("new-session", "-d", "-s", "console", "-n", window, *size, *where, *wrapper)
            self.socket = Path(self._tmux("display-message", "-p", "#{socket_path}").strip())
        else:
            self._tmux("new-window", "-t", "console", "-n", window, *where, *wrapper)
        self.target = f"console:{window}"

    def keys(self, *keys: str) -> None:
        """tmux key names: "Left", "Up", "Tab", "Enter", "C-d", "C-c", "Home"."""
        self._tmux("send-keys", "-t", self.target, *keys)

    def text(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.target, "-l", text)

    def paste(self, text: str) -> None:
        """Paste as a terminal does from the clipboard (bracketed, when the program asks)."""
        self._tmux("set-buffer", "-b", "paste", text)
        self._tmux("paste-buffer", "-p", "-d", "-b", "paste", "-t", self.target)

    def lines(self) -> list[str]:
        """Everything the pane shows and has scrolled off, wrapped lines joined."""
        out = self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", self.target)
        return [line.rstrip() for line in out.rstrip("\n").split("\n")]

    def wait(self, what: str, seen: Callable[[list[str]], bool]) -> list[str]:
        deadline = time.monotonic() + WAIT
        while True:
            lines = self.lines()
            if seen(lines):
                return lines
            if time.monotonic() > deadline:
                shown = "\n".join(lines[-30:])
                raise AssertionError(f"the screen never showed {what}; it shows:\n{shown}")
            time.sleep(0.05)

    def prompt_line(self) -> str:
        """The last non-blank line: the prompt and what is typed on it."""
        return next((line for line in reversed(self.lines()) if line), "")

    def wait_prompt(self, typed: str = "") -> None:
        """Wait until the prompt shows exactly `typed` (an empty prompt: ready for input)."""
        want = (PROMPT + typed).rstrip()
        self.wait(f"the prompt {want!r}", lambda lines: _last(lines) == want)

    def type(self, line: str) -> list[str]:
        """Type a line and press Enter; the lines printed before the next prompt."""
        self.wait_prompt()
        before = len(self.lines())
        self.text(line)
        self.wait_prompt(line)
        self.keys("Enter")
        echoed = (PROMPT + line).rstrip()

        def answered(lines: list[str]) -> bool:
            return _last(lines) == PROMPT.rstrip() and echoed in lines[before - 1 : -1]

        lines = self.wait(f"an answer to {line!r} and a new prompt", answered)
        start = len(lines) - 1 - lines[::-1].index(echoed)
        return lines[start + 1 : -1]

    def exit_status(self) -> int:
        lines = self.wait("the daemon's exit", lambda ls: any(_exit(x) is not None for x in ls))
        return next(code for x in lines if (code := _exit(x)) is not None)

    def daemon_pid(self) -> int:
        shell = self._tmux("display-message", "-p", "-t", self.target, "#{pane_pid}").strip()
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def close(self) -> None:
        """Close the terminal, as closing its window does; a daemon that outlived it (a test
        that failed half way) is killed, so no run leaves one behind."""
        try:
            daemon: int | None = self.daemon_pid()
        except (AssertionError, OSError):
            daemon = None  # never started, or already gone
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, timeout=30, check=False)
        if self.socket is not None:  # tmux leaves the socket file behind
            self.socket.unlink(missing_ok=True)
        if daemon is not None and not _stopped(daemon, WAIT):
            os.kill(daemon, signal.SIGKILL)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            [*self.tmux, *args], capture_output=True, text=True, env=self.env, timeout=30
        )
        assert done.returncode == 0, f"tmux {args[0]}: {done.stderr}"
        return done.stdout


def _last(lines: list[str]) -> str:
    return next((line for line in reversed(lines) if line), "")


def _stopped(pid: int, within: float) -> bool:
    """Whether process `pid` ends (or is a zombie waiting for its parent) within `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _exit(line: str) -> int | None:
    found = re.fullmatch(r"\[exit (\d+)\]", line)
    return int(found.group(1)) if found else None


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[Screen]:
    if TMUX is None:
        pytest.skip("tmux is not installed (.ci/run installs it): the terminal tests need one")
    term = Screen(tmp_path)
    try:
        yield term
    finally:
        term.close()


def test_a_terminal_gets_a_banner_a_prompt_and_no_log_lines(screen: Screen, tmp_path: Path) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    banner = "\n".join(screen.lines())
    assert f"chatopsd {__version__}" in banner
    assert "platforms: console" in banner and "Ctrl-D quits" in banner
    assert "!help" in banner
    log_file = tmp_path / "chatopsd.log"
    assert f"Logs: {log_file}" in banner
    answer = screen.type("!ic")
    assert "Incident Commanders on call" in answer
    # a hint is what to type: the prefix is kept
    assert "[Page Incident Commanders: !ic page]" in answer
    screen.keys("C-d")  # Ctrl-D at the prompt quits a console-only daemon
    assert screen.exit_status() == 0
    shown = "\n".join(screen.lines())
    assert not re.search(r"\b(INFO|DEBUG|WARNING)\b", shown), shown
    logged = log_file.read_text()
    assert "chatopsd ready" in logged and "command 'ic'" in logged


@pytest.mark.parametrize("how", ["the Ctrl-C key", "SIGINT"])
def test_ctrl_c_at_the_prompt_stops_and_leaves_the_shell_a_fresh_line(
    screen: Screen, tmp_path: Path, how: str
) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    screen.text("!ic pa")  # half typed
    screen.wait_prompt("!ic pa")
    if how == "SIGINT":
        os.kill(screen.daemon_pid(), signal.SIGINT)  # what the terminal sends mid-command
    else:
        screen.keys("C-c")  # at the prompt the key reaches the line editor, not the kernel
    assert screen.exit_status() == 0
    # the shell's next output starts a line of its own, not after "> !ic pa"
    assert "[exit 0]" in screen.lines()
    assert "stopping" in (tmp_path / "chatopsd.log").read_text()


def test_a_terminal_that_goes_away_stops_a_console_only_daemon(
    screen: Screen, tmp_path: Path
) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    daemon = screen.daemon_pid()
    subprocess.run([*screen.tmux, "kill-server"], capture_output=True, timeout=30, check=True)
    assert _stopped(daemon, WAIT), "the daemon kept running after its terminal went away"
    logged = (tmp_path / "chatopsd.log").read_text()
    assert "console input ended" in logged and "stopping" in logged


def test_a_reload_keeps_the_log_lines_in_the_file(screen: Screen, tmp_path: Path) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    os.kill(screen.daemon_pid(), signal.SIGHUP)  # the reload signal, as `systemctl reload`
    log_file = tmp_path / "chatopsd.log"
    screen.type("!help")  # answered after the reload: its log line comes after the reload's
    logged = log_file.read_text()
    assert "config reloaded" in logged and "command 'help'" in logged
    shown = "\n".join(screen.lines())
    assert not re.search(r"\b(INFO|DEBUG|WARNING)\b", shown), shown


def test_arrow_keys_and_home_edit_the_line(screen: Screen, tmp_path: Path) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    screen.text("!hlp")
    screen.keys("Left", "Left")
    screen.text("e")
    screen.wait_prompt("!help")  # inserted where the cursor was, no "^[[D" on screen
    screen.keys("End", "C-u")  # and the line can be cleared and typed again
    screen.wait_prompt()
    screen.text("ic")
    screen.keys("Home")
    screen.text("!")
    screen.wait_prompt("!ic")
    screen.keys("End")
    screen.text(" who ada")
    screen.keys("Enter")
    screen.wait("the answer", lambda lines: any("Ada Lovelace" in x for x in lines))
    assert not any("\x1b" in x or "^[" in x for x in screen.lines())


def test_a_pasted_block_runs_line_by_line(screen: Screen, tmp_path: Path) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    screen.paste("!ic who ada\n!ic who grace\n")
    screen.wait("the pasted block", lambda lines: lines[-2:] == ["> !ic who ada", "!ic who grace"])
    screen.keys("Enter")  # shown for review first; Enter runs each line as its own command
    lines = screen.wait(
        "both answers", lambda ls: _last(ls) == ">" and "Grace Hopper" in "".join(ls)
    )
    shown = "\n".join(lines)
    assert "Ada Lovelace" in shown and "nobody matches" not in shown


def test_up_recalls_the_history_also_after_a_restart(screen: Screen, tmp_path: Path) -> None:
    screen.start(tmp_path)
    screen.type("!status")
    screen.type("!ic")
    screen.keys("Up")
    screen.wait_prompt("!ic")
    screen.keys("Up")
    screen.wait_prompt("!status")
    screen.keys("Down", "Down")
    screen.wait_prompt()
    screen.keys("C-d")
    assert screen.exit_status() == 0
    # kept beside the database, readable by the daemon's user only (it holds what was typed)
    history = tmp_path / "chatopsd.history"
    assert history.stat().st_mode & 0o777 == 0o600
    screen.start(tmp_path)  # the next run, in the same place
    screen.wait_prompt()
    screen.keys("Up")
    screen.wait_prompt("!ic")
    screen.keys("Enter")
    screen.wait(
        "the recalled command's answer",
        lambda ls: (
            _last(ls) == ">"
            and any("Incident Commanders on call" in x for x in ls[ls.index("> !ic") :])
        ),
    )


def test_tab_completes_command_names(screen: Screen, tmp_path: Path) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    screen.text("!inc")
    screen.keys("Tab")
    screen.wait_prompt("!incident")  # and a space, ready for the next word
    screen.text("dec")
    screen.keys("Tab")
    screen.wait_prompt("!incident declare")
    screen.keys("C-u")
    screen.text("!i")
    screen.keys("Tab")  # several: like a shell, they are listed and the line is kept
    # The choices are printed first and the prompt is drawn again below them: wait for both.
    screen.wait(
        "the choices, then the line kept",
        lambda ls: any(re.search(r"!ic +!incident", x) for x in ls) and _last(ls) == "> !i",
    )


def test_what_arrives_at_the_prompt_is_printed_above_the_line_being_typed(
    screen: Screen, tmp_path: Path
) -> None:
    screen.start(tmp_path)
    screen.wait_prompt()
    screen.text("!ic wh")
    screen.wait_prompt("!ic wh")
    # a post that is no answer to this line (a stalker, another operator through ctl)
    subprocess.run(
        [sys.executable, "-m", "chatopsd", "ctl", "send", "console", "console", "deploy done"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
        check=True,
    )
    lines = screen.wait("the post", lambda lines: "deploy done" in lines)
    assert lines.index("deploy done") < len(lines) - 1
    screen.wait_prompt("!ic wh")  # the half-typed line is intact below it
    screen.text("o ada")
    screen.keys("Enter")
    screen.wait("the answer", lambda lines: any("Ada Lovelace" in x for x in lines))


def test_an_incident_on_the_console_prints_each_message_once(
    screen: Screen, tmp_path: Path
) -> None:
    screen.start(tmp_path)
    declared = "\n".join(screen.type('!incident declare --sev 2 "API slow"'))
    assert "thread" not in declared  # a console user can never enter a thread
    assert declared.count("INC-2026-0001 [SEV-2] API slow") == 2  # announcement, status
    assert declared.count("declared (SEV-2)") == 1
    # exactly one incident open: no id needed
    acked = "\n".join(screen.type("!incident ack looking at it"))
    assert "INC-2026-0001 acknowledged" in acked
    # the pinned status is edited in place: on a console, a marked reprint
    assert "↻ updated: 🟠 INC-2026-0001 [SEV-2] API slow" in acked
    assert "(edited" not in acked
    resolved = "\n".join(screen.type("!incident resolve rolled back"))
    assert resolved.count("INC-2026-0001 resolved: API slow") == 1, resolved
    screen.keys("C-d")
    assert screen.exit_status() == 0


def piped(tmp_path: Path, lines: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    """`chatopsd run` with its stdin a pipe, run to the end of its input."""
    done = subprocess.run(
        [sys.executable, *options, "-m", "chatopsd", "run", "--config", str(tmp_path / "c.toml")]
        if (tmp_path / "c.toml").exists()
        else [sys.executable, *options, "-m", "chatopsd", "run"],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def jsonl(tmp_path: Path, events: list[dict[str, str]]) -> list[dict[str, object]]:
    """A jsonl script run through the console (default rate limits): what it printed."""
    (tmp_path / "c.toml").write_text(
        f"[chatopsd]\nstate_db = '{tmp_path / 'state.db'}'\n[console]\nformat = 'jsonl'\n"
    )
    done = piped(tmp_path, [json.dumps(e) for e in events])
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_through_a_pipe_only_replies_are_printed(tmp_path: Path) -> None:
    done = piped(tmp_path, ["!ic", "!incident declare x", "!incident ack"])
    out = done.stdout
    assert "chatopsd 0" not in out and not out.startswith(PROMPT)  # no banner, no prompt
    assert "[Page Incident Commanders: !ic page]" in out
    assert "INC-2026-0001 acknowledged" in out and "↻ updated:" in out
    assert out.count("declared (SEV-3)") == 1
    assert "no answer" not in out  # each of the three was answered
    assert "INFO" not in out and "chatopsd ready" in done.stderr  # logs stay on stderr
    assert not (tmp_path / "chatopsd.log").exists()


def test_fifteen_piped_commands_get_fifteen_answers(tmp_path: Path) -> None:
    """The console is the operator, not a chat user: no rate limit (10 answered, 4 dropped
    silently and one "easy there" before)."""
    out = piped(tmp_path, ["!ic"] * 15).stdout
    assert out.count("Incident Commanders on call") == 15, out
    assert "Easy there" not in out


def test_a_fifteen_line_jsonl_script_gets_fifteen_answers(tmp_path: Path) -> None:
    printed = jsonl(tmp_path, [{"text": "!status", "event_id": f"s{i}"} for i in range(15)])
    assert [line["reply_to"] for line in printed] == [f"s{i}" for i in range(15)]
    assert all("Status:" in str(line["text"]) for line in printed)


def test_no_piped_line_goes_without_a_line_back(tmp_path: Path) -> None:
    out = piped(tmp_path, ["hello", "", "!ic who ada"]).stdout
    assert out.startswith(
        'no answer to "hello": not a command (commands start with !; !help lists them)\n'
    )
    assert "Ada Lovelace" in out and out.count("no answer") == 1  # a blank line is no input


def test_no_jsonl_line_goes_without_a_line_back(tmp_path: Path) -> None:
    script = [
        {"text": "!ic who ada", "event_id": "e1"},
        {"text": "!ic who ada", "event_id": "e1"},  # a repeated id is dropped, and says so
        {"text": "good morning", "event_id": "e2"},  # people talking: not for the bot
        {"text": "🎉", "kind": "reaction", "event_id": "e3"},
    ]
    first, *dropped = jsonl(tmp_path, script)
    assert first["reply_to"] == "e1" and "Ada Lovelace" in str(first["text"])
    assert [(d["reply_to"], str(d["error"])) for d in dropped] == [
        ("e1", "no answer: event id e1 was handled before (a repeat is dropped)"),
        ("e2", "no answer: not a command (commands start with !; !help lists them)"),
        ("e3", "no answer: this reaction stands for no command"),
    ]
    # the next run over the same database drops it too (durably handled), and says so
    [again] = jsonl(tmp_path, script[:1])
    assert again["reply_to"] == "e1" and str(again["error"]).startswith("no answer: ")


def test_a_plain_language_request_gets_its_commands_answer_and_nothing_else(
    tmp_path: Path,
) -> None:
    """`!intent` re-dispatches what it reads as the command itself: that command's answer is
    the line's answer, in order, never preceded by a "no answer" for the request."""
    script = [
        {"text": "!intent who is on call", "event_id": "i1"},
        {"text": "!intent what is the status", "event_id": "i2"},
        {"text": "!intent list incidents", "event_id": "i3"},
        {"text": "!status", "event_id": "s1"},
    ]
    printed = jsonl(tmp_path, script)
    assert [line.get("error") for line in printed] == [None] * 4, printed
    assert [line["reply_to"] for line in printed] == ["i1", "i2", "i3", "s1"]
    texts = [str(line["text"]) for line in printed]
    assert "Incident Commanders on call" in texts[0]
    assert "Status:" in texts[1] and "Status:" in texts[3]
    assert texts[2] == "No open incidents."


def test_jsonl_button_hints_carry_the_prefix(tmp_path: Path) -> None:
    """A hint is the command to type: "!ic page", not "ic page"."""
    [answer] = jsonl(tmp_path, [{"text": "!ic", "event_id": "b1"}])
    assert "[Page Incident Commanders: !ic page]" in str(answer["text"])


def test_a_service_never_loads_the_line_editor(tmp_path: Path) -> None:
    """prompt_toolkit is imported only for a terminal: piped (or /dev/null) stdin, as a
    service has, costs no start time or memory for it."""
    done = piped(tmp_path, ["!help"], "-X", "importtime")
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "chatopsd.connectors.console" in imported  # the listing is what it claims to be
    assert not {m for m in imported if m.startswith(("prompt_toolkit", "wcwidth"))}
    assert "chatopsd.connectors.terminal" not in imported


def test_what_a_run_in_the_checkout_leaves_behind_is_ignored_by_git() -> None:
    """Running the daemon from a clone (the README's quick start) leaves its database, its
    socket, its fallback card and, on a terminal, its log file there: none of them is
    something to commit."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["chatopsd.db", "chatopsd.db-wal", "chatopsd.sock", "chatopsd.log", "chatopsd.history"]
    names.append("chatopsd.fallback.md")  # the fallback card the demo writes
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert sorted(done.stdout.split()) == sorted(names), done.stdout + done.stderr


PATHS = [("help",), ("ic",), ("ic", "page"), ("ic", "page", "responders"), ("incident", "ack")]


@pytest.mark.parametrize(
    ("typed", "offered"),
    [
        ("", ["!help ", "!ic ", "!incident "]),
        ("!i", ["!ic ", "!incident "]),
        ("inc", ["!incident "]),  # the first word gets its prefix
        ("!IC", ["!ic "]),
        ("!ic p", ["page "]),
        ("!ic  P", ["page "]),
        ("!ic page r", ["responders "]),
        ("!ic page responders x", []),  # past the command's words: its arguments
        ("!incident ack INC", []),
        ("!nope a", []),
        ("ic p", []),  # a second word only after a prefixed first one
    ],
)
def test_tab_offers_the_words_of_known_commands(typed: str, offered: list[str]) -> None:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from chatopsd.connectors.terminal import CommandCompleter, completions

    assert completions("!", PATHS, typed) == offered
    # each replaces the word being typed, the first one with its prefix
    found = list(
        CommandCompleter("!", lambda: PATHS).get_completions(Document(typed), CompleteEvent())
    )
    word = typed.rsplit(" ", 1)[-1]
    assert [(c.text, c.start_position) for c in found] == [(o, -len(word)) for o in offered]
