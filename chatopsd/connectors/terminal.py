"""The console on a terminal: line editing, history and completion of command names.

prompt_toolkit does the editing (arrow keys, Home/End, Ctrl-A/E/K/W, Up/Down through the
history, Ctrl-R search, Tab completion); it replaces hand-written line editing. This module
is imported only when stdin and stdout are a terminal (connectors/console.py), so a service
(stdin /dev/null, a pipe, a jsonl script) never loads prompt_toolkit: its start time and
memory are unchanged.

Keys: Enter sends the line (a pasted block: each of its lines, in order); Ctrl-D on an empty
line ends the input (it stops a console-only daemon); Ctrl-C stops the daemon, as it does in
any terminal program. Anything printed while the prompt is on screen (an answer, a stalker's
post, a stray write to stdout or stderr) appears above the prompt, and the line being typed
stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app_or_none, run_in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import create_input
from prompt_toolkit.output import create_output
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import CompleteStyle

log = logging.getLogger("chatopsd.console")

# Command paths, as words: ("ic", "page"), ("help",). Read at each Tab, so a config reload
# that adds or drops a `[[commands]]` entry is completed at once.
Commands = Callable[[], Iterable[tuple[str, ...]]]
# How many history entries a start reads back (the file itself only grows by appending).
HISTORY_LOADED = 1000


def completions(prefix: str, paths: Iterable[tuple[str, ...]], before: str) -> list[str]:
    """The words that complete the word being typed at the end of `before` (the text left
    of the cursor), each followed by a space: the command's first word with its prefix
    ("!inc" or "inc" -> "!incident "), then each next word of a known path
    ("!incident dec" -> "declare "). Nothing past the command's words (its arguments)."""
    typed = before.lstrip()
    first_word = " " not in typed
    if first_word:
        word = typed.removeprefix(prefix) if prefix else typed
        return sorted({f"{prefix}{p[0]} " for p in paths if p and p[0].startswith(word.lower())})
    if prefix and not typed.startswith(prefix):
        return []
    words = typed[len(prefix) :].split(" ")
    done, partial = [w.lower() for w in words[:-1] if w], words[-1].lower()
    n = len(done)
    return sorted(
        {
            f"{p[n]} "
            for p in paths
            if len(p) > n and tuple(p[:n]) == tuple(done) and p[n].startswith(partial)
        }
    )


class CommandCompleter(Completer):
    def __init__(self, prefix: str, commands: Commands) -> None:
        self.prefix = prefix
        self.commands = commands

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        before = document.text_before_cursor
        typed = before.lstrip()
        # what the completion replaces: the word being typed (the first one with its prefix)
        replaced = len(typed) if " " not in typed else len(typed.rsplit(" ", 1)[1])
        for word in completions(self.prefix, self.commands(), before):
            yield Completion(word, start_position=-replaced)


class _History(FileHistory):
    """The history file, private to the daemon's user (it holds what was typed), and never a
    reason for the console to fail: a file that cannot be read or written is logged once and
    the history of this run is kept in memory."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path
        self._warned = False

    def load_history_strings(self) -> Iterable[str]:
        try:
            return list(super().load_history_strings())[:HISTORY_LOADED]
        except OSError as exc:
            self._warn("read", exc)
            return []

    def store_string(self, string: str) -> None:
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
            super().store_string(string)
        except OSError as exc:
            self._warn("write", exc)

    def _warn(self, what: str, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("console history: cannot %s %s: %s", what, self.path, exc.strerror)


class Terminal:
    """The prompt: reads lines with editing, history and completion, and writes output
    above it. `handle(line)` is awaited for each line before the next prompt, so answers
    come in order and before the prompt that follows them."""

    def __init__(
        self,
        *,
        stdin: TextIO,
        stdout: TextIO,
        prompt: str,
        prefix: str,
        commands: Commands,
        history: Path | None,
    ) -> None:
        self.stdout = stdout
        self.prompt = prompt
        self.history: History = _History(history) if history is not None else InMemoryHistory()
        self.session: PromptSession[str] = PromptSession(
            input=create_input(stdin),
            output=create_output(stdout),
            history=self.history,
            completer=CommandCompleter(prefix, commands),
            complete_style=CompleteStyle.READLINE_LIKE,  # Tab like a shell: list, then pick
            complete_while_typing=False,
        )
        self._pending: set[Awaitable[None]] = set()  # writes waiting for the prompt to hide

    async def serve(self, handle: Callable[[str], Awaitable[None]]) -> None:
        """Read lines until Ctrl-D. Ctrl-C sends this process SIGINT: the terminal is in raw
        mode while the prompt is up, so the key does not do it by itself, and the daemon
        stops the way it does for a Ctrl-C typed while a command runs."""
        with patch_stdout():  # stray writes to stdout or stderr go above the prompt too
            while True:
                try:
                    line = await self.session.prompt_async(
                        self.prompt,
                        # the daemon's own SIGINT handler stops it; the loop's exception
                        # handler stays the daemon's (prompt_toolkit would pause on errors)
                        handle_sigint=False,
                        set_exception_handler=False,
                    )
                except EOFError:
                    return
                except OSError as exc:
                    # EIO: the terminal hung up (its window closed, the ssh session dropped).
                    # Nobody can type here any more: the console's input is over, as with
                    # Ctrl-D, so a console-only daemon stops instead of running on unseen.
                    log.warning("the console's terminal went away (%s): console input ended", exc)
                    return
                except KeyboardInterrupt:
                    signal.raise_signal(signal.SIGINT)
                    await asyncio.Event().wait()  # the daemon is stopping: it cancels us
                # A pasted block arrives whole (bracketed paste) and is shown for review;
                # Enter then runs it line by line, as typing each line would have.
                for each in line.splitlines():
                    await handle(each)

    def write(self, text: str) -> None:
        """Print above the prompt when it is on screen, else at the cursor."""
        app = get_app_or_none()
        if app is None or not app.is_running:
            self._write_now(text)
            return
        task = asyncio.ensure_future(run_in_terminal(lambda: self._write_now(text)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _write_now(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()
