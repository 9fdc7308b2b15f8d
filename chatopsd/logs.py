"""Logging to stderr for journald: one line per event, plain or JSON, tokens redacted; and
`OutageLog`, the rationed lines about something that fails for a while (a job, a status source)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from chatopsd import redact

if TYPE_CHECKING:
    from chatopsd.core.ports import Clock

_PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats, then replaces every known token (message, args and traceback alike)."""

    def __init__(self, secrets: Iterable[str], as_json: bool) -> None:
        super().__init__(_PLAIN)
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True))
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        if self.as_json:
            payload = {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
            if record.exc_info:
                payload["exception"] = self.formatException(record.exc_info)
            text = json.dumps(payload, ensure_ascii=False)
        else:
            text = super().format(record)
        return self.redact(text)

    def redact(self, text: str) -> str:
        # configured tokens, URL credentials and query values, webhook/interaction tokens
        return redact.text(text, self.secrets)


def setup(
    level: str = "info", fmt: str = "plain", secrets: Iterable[str] = (), file: Path | None = None
) -> None:
    """`file`: log there instead of stderr (an interactive console keeps its screen for replies)."""
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if file is None else logging.FileHandler(file)
    )
    handler.setFormatter(RedactingFormatter(secrets, fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO (every websocket frame, every job run) drowns the useful lines.
    for noisy in ("apscheduler", "discord", "slack_sdk", "aiosqlite", "websockets", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def log_file() -> Path | None:
    """The file the logs go to, if not stderr."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def toggle_debug() -> str:
    """Flip the chatopsd loggers between DEBUG and INFO at runtime (SIGUSR1)."""
    logger = logging.getLogger("chatopsd")
    new = logging.INFO if logger.getEffectiveLevel() <= logging.DEBUG else logging.DEBUG
    logger.setLevel(new)
    return logging.getLevelName(new)


REMIND_SECONDS = 300.0


@dataclass(slots=True)
class _Outage:
    since: datetime
    cause: str
    said_at: float  # monotonic time of the last log line about it


class OutageLog:
    """Log lines about things that fail for a while (a job, a status source), rationed: one
    WARNING with the cause when it starts, at most one line every `remind` s while it lasts,
    one INFO when it recovers."""

    def __init__(
        self, logger: logging.Logger, clock: Clock, remind: float = REMIND_SECONDS
    ) -> None:
        self.logger, self.clock, self.remind = logger, clock, remind
        self._open: dict[str, _Outage] = {}

    def failed(self, what: str, cause: str) -> None:
        now, mono = self.clock.now(), self.clock.monotonic()
        outage = self._open.get(what)
        if outage is None:
            self._open[what] = _Outage(now, cause, mono)
            self.logger.warning("%s failing: %s", what, cause)
            return
        outage.cause = cause
        if mono - outage.said_at >= self.remind:
            outage.said_at = mono
            self.logger.warning(
                "%s still failing since %s: %s", what, outage.since.strftime("%H:%M UTC"), cause
            )

    def ok(self, what: str) -> None:
        outage = self._open.pop(what, None)
        if outage is not None:
            self.logger.info(
                "%s recovered (failing since %s: %s)",
                what,
                outage.since.strftime("%H:%M UTC"),
                outage.cause,
            )

    def report(self, what: str, cause: str | None) -> None:
        if cause is None:
            self.ok(what)
        else:
            self.failed(what, cause)
