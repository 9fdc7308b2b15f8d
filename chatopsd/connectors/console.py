"""The embedded console connector: one line in is one message, replies are printed.

`format = "text"` is for people. `format = "jsonl"` is for scripts and tests: each input line
is a JSON object {"text", optional "event_id", "actor", "channel", "kind"} and each reply is
printed as one JSON object {"channel", "reply_to", "text", "ephemeral"}.
End of input stops a console-only daemon, so `printf '!ic\n' | chatopsd run` works.

On a terminal (stdin and stdout both a tty, text format) it behaves like a tool: a banner
(version, platforms, how to quit), a prompt, and log lines kept out of the way (cli.py sends
them to a file, named in the banner). Through a pipe it prints replies only.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import json
import logging
import os
import stat
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TextIO, get_args

from chatopsd.connectors.base import Session
from chatopsd.core.messages import Actor, Destination, Inbound, Kind, Reply, Sent

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
    ) -> None:
        self.fmt = fmt
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.on_eof = on_eof
        self.prefix = prefix
        self.interactive = interactive(fmt, self.stdin, self.stdout)
        self.banner = banner
        self._prompting = False  # the prompt is on screen, waiting for a line
        self.user = _user()
        self._run_id = uuid.uuid4().hex[:8]
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(1)

    async def run(self, session: Session) -> None:
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
        session.ready()
        if self.interactive:
            if self.banner:
                self._write(self.banner)
            self._prompt()
        while (line := await lines.get()) is not None:
            self._prompting = False  # the user's Enter ended the prompt line
            event = self._parse(line.rstrip("\r\n"))
            if event is not None and (task := session.emit(event)) is not None:
                await asyncio.wait([task])  # one at a time, so answers print in order
            self._prompt()
        if self.interactive:
            self._prompting = False
            self._write("")  # end the prompt line that Ctrl-D left open
        if self.on_eof is not None:
            self.on_eof()
        await asyncio.Event().wait()  # input is over; stay "connected" until shutdown

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
        if self.fmt == "jsonl":
            self._write(
                json.dumps(
                    {
                        "channel": destination.channel,
                        "reply_to": destination.reply_to,
                        "message_id": message_id,
                        "text": reply.plain(),
                        "ephemeral": reply.ephemeral,
                    }
                )
            )
        else:
            self._write(self.render(reply) + "\n")
        return Sent(destination, message_id)

    async def edit(self, sent: Sent, reply: Reply) -> None:
        if self.fmt == "jsonl":
            self._write(json.dumps({"edit": sent.message_id, "text": reply.plain()}))
        else:
            self._write(f"↻ updated: {self.render(reply)}\n")

    def render(self, reply: Reply) -> str:
        """Plain text, with each button shown as the command to type, prefix included."""
        text = replace(reply, buttons=()).plain()
        if reply.buttons:
            hints = "  ".join(f"[{b.label}: {self.prefix}{b.command}]" for b in reply.buttons)
            text = f"{text}\n{hints}" if text else hints
        return text

    async def close(self) -> None:
        if self._prompting:
            # Stopped at the prompt (Ctrl-C, SIGTERM): end its line, or the shell's prompt
            # would follow "> " on the same line.
            self._prompting = False
            self._raw("\n")
        self.stdout.flush()

    def _prompt(self) -> None:
        if self.interactive and not self._prompting:
            self._raw(PROMPT)
            self._prompting = True

    def _write(self, text: str) -> None:
        if self._prompting:
            # Something arrived while the user is at the prompt (a stalker, an edit): print it
            # over the prompt line, then show the prompt again below it.
            self._raw("\r\x1b[K" + text + "\n" + PROMPT)
        else:
            self._raw(text + "\n")

    def _raw(self, text: str) -> None:
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except (BrokenPipeError, ValueError):
            log.warning("console output is closed; reply dropped")


PROMPT = "> "


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


def _user() -> Actor:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "console"
    return Actor(id=name, name=name)
