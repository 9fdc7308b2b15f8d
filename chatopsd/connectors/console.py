"""The embedded console connector: one line in is one message, replies are printed.

`format = "text"` is for people. `format = "jsonl"` is for scripts and tests: each input line
is a JSON object {"text", optional "event_id", "actor", "channel", "kind"} and each reply is
printed as one JSON object {"channel", "reply_to", "text", "ephemeral"}.
End of input stops a console-only daemon, so `printf '!ic\n' | chatopsd run` works.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable
from typing import TextIO, get_args

from chatopsd.connectors.base import Session
from chatopsd.core.messages import Actor, Destination, Inbound, Kind, Reply, Sent

log = logging.getLogger("chatopsd.console")


class ConsoleConnector:
    platform = "console"

    def __init__(
        self,
        *,
        fmt: str = "text",
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        on_eof: Callable[[], None] | None = None,
    ) -> None:
        self.fmt = fmt
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.on_eof = on_eof
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
        while (line := await lines.get()) is not None:
            event = self._parse(line.rstrip("\r\n"))
            if event is not None and (task := session.emit(event)) is not None:
                await asyncio.wait([task])  # one at a time, so answers print in order
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
            self._write(reply.plain() + "\n")
        return Sent(destination, message_id)

    async def edit(self, sent: Sent, reply: Reply) -> None:
        if self.fmt == "jsonl":
            self._write(json.dumps({"edit": sent.message_id, "text": reply.plain()}))
        else:
            self._write(f"(edited {sent.message_id})\n{reply.plain()}\n")

    async def close(self) -> None:
        self.stdout.flush()

    def _write(self, text: str) -> None:
        try:
            self.stdout.write(text + "\n")
            self.stdout.flush()
        except (BrokenPipeError, ValueError):
            log.warning("console output is closed; reply dropped")


def _user() -> Actor:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "console"
    return Actor(id=name, name=name)
