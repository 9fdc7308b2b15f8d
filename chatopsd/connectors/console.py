"""The embedded console connector: one line in is one message, replies are printed.

`format = "text"` is for people. `format = "jsonl"` is for scripts and tests: each input line
is a JSON object {"text", optional "event_id", "actor", "channel", "kind"} and each reply is
printed as one JSON object {"channel", "reply_to", "text", "ephemeral"}; a button is shown in
"text" as the command to type, prefix included ("[Page: !ic page]").
End of input stops a console-only daemon, so `printf '!ic\n' | chatopsd run` works.

The console is the operator at the machine, not a chat user: it is never rate limited
(core/middleware.RateLimit), and every input line gets a line back. A line that gets no
answer (not a command, an event id handled before) says so: "no answer to …" in text,
{"reply_to", "error"} in jsonl. Blank lines are skipped.

On a terminal (stdin and stdout both a tty, text format) it behaves like a tool: a banner
(version, platforms, how to quit), a prompt with line editing, history kept in a file beside
the database, and Tab completion of command names (connectors/terminal.py, prompt_toolkit,
imported only then); log lines are kept out of the way (cli.py sends them to a file, named
in the banner). Through a pipe it prints replies only.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import itertools
import json
import logging
import os
import stat
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, get_args

from chatopsd.connectors.base import Session
from chatopsd.core.messages import Actor, Destination, Inbound, Kind, Reply, Sent

if TYPE_CHECKING:
    from chatopsd.connectors.terminal import Terminal

log = logging.getLogger("chatopsd.console")


class ConsoleConnector:
    # No optional capability (core/capabilities), threads included: one stream, where a
    # reply "in a thread" prints where everything else does.
    platform = "console"

    def __init__(
        self,
        *,
        fmt: str = "text",
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        on_eof: Callable[[], None] | None = None,
        prefix: str = "!",
        banner: str = "",
        commands: Callable[[], Iterable[tuple[str, ...]]] = tuple,
        history: Path | None = None,
    ) -> None:
        """`commands`: the command paths, for Tab completion on a terminal. `history`: the
        file that keeps what was typed at the terminal, across runs."""
        self.fmt = fmt
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.on_eof = on_eof
        self.prefix = prefix
        self.interactive = interactive(fmt, self.stdin, self.stdout)
        self.banner = banner
        self.commands = commands
        self.history = history
        self.user = console_user()
        self._run_id = uuid.uuid4().hex[:8]
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._terminal: Terminal | None = None  # the prompt, on a terminal
        self._printed = 0  # replies and edits printed so far
        # The input line being answered (its message id), and the answers to it printed
        self._answering: str | None = None
        self._answers = 0
        self._answer_printed = asyncio.Event()
        # jsonl event ids of this run (the latest ones), to name a repeat as such
        self._event_ids: dict[str, None] = {}

    async def run(self, session: Session) -> None:
        if self.interactive:
            from chatopsd.connectors.terminal import Terminal

            self._terminal = Terminal(
                stdin=self.stdin,
                stdout=self.stdout,
                prompt=PROMPT,
                prefix=self.prefix,
                commands=self.commands,
                history=self.history,
            )
            session.ready()
            if self.banner:
                self._write(self.banner)
            await self._terminal.serve(lambda line: self._line(session, line))
        else:
            session.ready()
            await self._piped(session)
        if self.on_eof is not None:
            self.on_eof()
        await asyncio.Event().wait()  # input is over; stay "connected" until shutdown

    async def _piped(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def pump() -> None:
            # A daemon thread: a blocked readline must not keep the process alive at exit.
            try:
                for line in self.stdin:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
                loop.call_soon_threadsafe(lines.put_nowait, None)
            except (RuntimeError, ValueError):
                pass  # the loop closed (daemon stopped) or stdin was closed under us

        threading.Thread(target=pump, name="console-stdin", daemon=True).start()
        while (line := await lines.get()) is not None:
            await self._line(session, line.rstrip("\r\n"))

    async def _line(self, session: Session, line: str) -> None:
        """One input line: handled, one at a time so answers print in order, and never
        dropped without a line saying so."""
        event = self._parse(line)
        if event is None:
            return
        printed = self._printed
        self._answering, self._answers = event.message_id, 0
        task = session.emit(event)
        if task is None:
            self._no_answer(event, "the daemon is shutting down")
            return
        await asyncio.wait([task])
        if task.cancelled():
            self._no_answer(event, "the daemon is shutting down")
        elif task.exception() is not None:
            self._no_answer(event, "internal error; it has been logged")
        elif not task.result() and self._printed == printed:
            self._no_answer(event, self._why_unanswered(event))
        else:
            await self._printed_answers(len(task.result()))
        self._answering = None
        if self.fmt == "jsonl":
            self._event_ids[event.event_id] = None
            if len(self._event_ids) > REMEMBERED_IDS:
                del self._event_ids[next(iter(self._event_ids))]

    async def _printed_answers(self, count: int) -> None:
        """Wait until the answers to the current line are printed: the bus queues most of
        them for the outbox, which prints them a moment after the command is done; the next
        prompt (and the next piped line) comes after them."""
        try:
            async with asyncio.timeout(ANSWERS_WAIT):
                while self._answers < count:
                    self._answer_printed.clear()
                    await self._answer_printed.wait()
        except TimeoutError:
            log.warning("%d answer(s) not printed after %.0f s; reading on", count, ANSWERS_WAIT)

    def _why_unanswered(self, event: Inbound) -> str:
        if event.event_id in self._event_ids:
            return f"event id {event.event_id} was handled before (a repeat is dropped)"
        if event.kind == "reaction":
            return "this reaction stands for no command"
        if event.kind == "message" and not event.text.lstrip().startswith(self.prefix):
            return (
                f"not a command (commands start with {self.prefix}; {self.prefix}help lists them)"
            )
        if event.kind == "thread":
            return "talk in a thread, not a command"
        return "a repeated event id, or not this instance's to answer (the log says which)"

    def _no_answer(self, event: Inbound, why: str) -> None:
        if self.fmt == "jsonl":
            self._write(json.dumps({"reply_to": event.message_id, "error": f"no answer: {why}"}))
        else:
            self._write(f"no answer to {_quoted(event.text)}: {why}")

    def _parse(self, line: str) -> Inbound | None:
        if not line.strip():
            return None
        if self.fmt != "jsonl":
            return Inbound(
                platform="console",
                channel="console",
                actor=self.user,
                text=line,
                event_id=f"{self._run_id}-{next(self._ids)}",
                message_id=str(next(self._msg_ids)),
            )
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError("expected an object with a string 'text'")
            actor = obj.get("actor")
            kind = obj.get("kind", "message")
            if kind not in get_args(Kind):
                raise ValueError(f"kind must be one of {', '.join(get_args(Kind))}")
            event_id = str(obj.get("event_id") or f"{self._run_id}-{next(self._ids)}")
            return Inbound(
                platform="console",
                channel=str(obj.get("channel", "console")),
                actor=Actor(id=str(actor), name=str(actor)) if actor else self.user,
                text=obj["text"],
                kind=kind,
                event_id=event_id,
                thread=obj.get("thread"),
                message_id=event_id,  # so each jsonl reply names the event it answers
            )
        except ValueError as exc:
            self._write(json.dumps({"error": f"bad input line: {exc}"}))
            return None

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        message_id = str(next(self._msg_ids))
        self._counted(destination)
        if self.fmt == "jsonl":
            self._write(
                json.dumps(
                    {
                        "channel": destination.channel,
                        "reply_to": destination.reply_to,
                        "message_id": message_id,
                        "text": self.render(reply),
                        "ephemeral": reply.ephemeral,
                    }
                )
            )
        else:
            self._write(self.render(reply) + "\n")
        return Sent(destination, message_id)

    async def edit(self, sent: Sent, reply: Reply) -> None:
        self._counted(sent.destination)  # an answer that replaces a notice ("Paging…")
        if self.fmt == "jsonl":
            self._write(json.dumps({"edit": sent.message_id, "text": self.render(reply)}))
        else:
            self._write(f"↻ updated: {self.render(reply)}\n")

    def _counted(self, destination: Destination) -> None:
        self._printed += 1
        if destination.reply_to is not None and destination.reply_to == self._answering:
            self._answers += 1
            self._answer_printed.set()

    def render(self, reply: Reply) -> str:
        """Plain text, with each button shown as the command to type, prefix included."""
        text = (replace(reply, buttons=()) if reply.buttons else reply).plain()  # no idle copy
        if reply.buttons:
            hints = "  ".join(f"[{b.label}: {self.prefix}{b.command}]" for b in reply.buttons)
            text = f"{text}\n{hints}" if text else hints
        return text

    async def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.stdout.flush()

    def _write(self, text: str) -> None:
        text += "\n"
        if self._terminal is not None:
            self._terminal.write(text)  # above the prompt when it is on screen
            return
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except (BrokenPipeError, ValueError):
            log.warning("console output is closed; reply dropped")


PROMPT = "> "
REMEMBERED_IDS = 10_000
# At most this long for the answers to a line to be printed before reading the next
# (they come within milliseconds; this only bounds a reply the outbox could not deliver).
ANSWERS_WAIT = 30.0


def interactive(fmt: str, stdin: TextIO, stdout: TextIO) -> bool:
    """A person at a terminal (rather than a pipe or a script speaking jsonl)."""
    try:
        return fmt == "text" and stdin.isatty() and stdout.isatty()
    except (AttributeError, ValueError):
        return False


def no_input(stdin: TextIO | None) -> bool:
    """Nothing can ever arrive on stdin: it is closed, or it is /dev/null (what systemd, cron
    and `nohup` give a daemon). A terminal, a pipe or a file, even an empty one, is input: a
    pipe's commands are answered before end of input stops a console-only daemon."""
    if stdin is None:
        return True
    try:
        here = os.fstat(stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return True  # closed, or no file descriptor at all
    if not stat.S_ISCHR(here.st_mode):
        return False
    try:
        return here.st_rdev == os.stat(os.devnull).st_rdev
    except OSError:
        return False


def _quoted(text: str, limit: int = 60) -> str:
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)


def console_user() -> Actor:
    """Who types on the console: the user the daemon runs as."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "console"
    return Actor(id=name, name=name)
